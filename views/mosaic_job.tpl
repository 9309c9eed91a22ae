% rebase('base', title='job ' + job['state'])
% if job['state'] in ('queued', 'running'):
<meta http-equiv="refresh" content="1">
% end
<nav class="crumbs"><a href="/files/">files</a> / <a href="/mosaic">mosaic</a> / job</nav>
<h1>{{job['kind']}} job: {{job['state']}}</h1>
<p><progress max="{{job['total'] or 1}}" value="{{job['done']}}"></progress> {{job['stage']}} {{job['done']}} / {{job['total']}}</p>
% if job['error']:
<p class="error-message">{{job['error']}}</p>
% end
% result = job['result'] or {}
% if result.get('name'):
<p><a href="/mosaic?result={{result['name']}}">See the mosaic</a></p>
% elif job['state'] == 'done':
<p>Added {{result.get('added', 0)}} tiles, skipped {{len(result.get('skipped', []))}}. <a href="/mosaic/tiles">The library</a></p>
% end
