<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} · fileserver</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/style.css">
{{!get('head', '')}}
</head>
<body>
<header><a class="home" href="/files/">fileserver</a>
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
</header>
<main>
{{!base}}
</main>
</body>
</html>
