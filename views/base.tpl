<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} · fileserver</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/style.css">
% if get('csrf'):
<meta name="csrf-token" content="{{csrf}}">
% end
{{!get('head', '')}}
</head>
<body>
%# "/files" (redirected to "/files/"): tools that list a folder by its links would take
%# "/files/" for an entry of the root, and fsspec reads "/" as the folder itself.
<header><a class="home" href="/files">fileserver</a>
% try:  # links that feature plugins add; none on pages rendered outside a request
%   links, here = request.app.config.get('fileserver.nav') or (), request.path
% except (NameError, RuntimeError):
%   links, here = (), ''
% end
% if links:
<nav class="site">
% for href, label in links:
  <a href="{{href}}"{{!' aria-current="page"' if here == href else ''}}>{{label}}</a>
% end
</nav>
% end
% if get('user'):
<div class="account"><a href="/account">{{user.name}}</a> ({{user.role}})
  <form method="post" action="/logout"><input type="hidden" name="_csrf" value="{{get('csrf') or ''}}"><button type="submit">Log out</button></form></div>
% elif get('accounts_in_use'):
<div class="account"><a href="/login">Log in</a></div>
% end
</header>
<main>
{{!base}}
</main>
</body>
</html>
