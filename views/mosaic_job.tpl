% running = job['state'] in ('queued', 'running')
% is_mosaic = job['kind'] == 'mosaic'
% what = 'Making a mosaic' if is_mosaic else 'Adding tiles'
% rebase('base', title=what.lower() + ': ' + job['state'], head='<meta http-equiv="refresh" content="1">' if running else '')
% if is_mosaic:
<nav class="crumbs"><a href="/files/">files</a> / <a href="/mosaic">make a mosaic</a> / job</nav>
% else:
<nav class="crumbs"><a href="/files/">files</a> / <a href="/mosaic/tiles">mosaic tiles</a> / job</nav>
% end
<h1>{{what}}: <span class="state state-{{job['state']}}">{{job['state']}}</span></h1>

% stages = {'ingesting': 'Adding tiles', 'indexing': 'Indexing tiles', 'matching': 'Matching cells to tiles', 'rendering': 'Rendering'}
% result = job['result'] or {}
<section id="job" class="job" data-state="{{job['state']}}">
% if running:
<p class="work-step">
%   if job['total'] and (job['done'] or job['stage'] != 'matching'):
<progress max="{{job['total']}}" value="{{job['done']}}"></progress>
<span class="label">{{stages.get(job['stage'], job['stage'] or 'Working')}}: {{job['done']}} / {{job['total']}} ({{job['done'] * 100 // job['total']}}%)</span>
%   else:
<progress></progress>
%     if job['state'] == 'queued':
<span class="label">Waiting for a free worker…</span>
%     elif job['stage'] == 'matching':
<span class="label">Matching {{job['total']}} cell{{'' if job['total'] == 1 else 's'}} to tiles…</span>
%     else:
<span class="label">{{stages.get(job['stage'], 'Working')}}…</span>
%     end
%   end
</p>
<p class="hint">This page refreshes every second.</p>
% elif job['state'] == 'failed':
<p class="error-message">{{job['error']}}</p>
<p class="hint">HTTP status {{job['status']}}. <a href="{{'/mosaic' if is_mosaic else '/mosaic/tiles'}}">Try again</a></p>
% elif is_mosaic and result.get('name'):
%   url = file_url(result['name'], False)
<p class="links"><a class="open" href="{{url}}">{{result['name']}}</a> · <a class="download" href="{{url}}?download">Download</a> · <a href="/mosaic?result={{quote(result['name'], safe='')}}">Make another</a></p>
<p class="details">{{result['cols']}} × {{result['rows']}} cells, {{result['tiles_used']}} different tiles, {{result['seconds']}} s</p>
<a class="image" href="{{url}}"><img class="mosaic" src="{{url}}" alt="mosaic {{result['name']}}"></a>
% else:
%   include('mosaic_report', result=result)
<p class="links"><a href="/mosaic/tiles">See the library</a></p>
% end
</section>
