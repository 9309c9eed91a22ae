% rebase('base', title='/' + folder)
% parts = folder.rstrip('/').split('/') if folder else []
% here = file_url(folder, False)
%# The folder itself is no link: tools that list a folder by its links (fsspec,
%# rclone, wget) would take it for an entry.
<nav class="crumbs">
% if parts:
<a href="/files/">files</a>
% else:
<span aria-current="page">files</span>
% end
% for i, part in enumerate(parts):
%   if i + 1 < len(parts):
 / <a href="{{file_url('/'.join(parts[:i + 1]) + '/', False)}}">{{part}}</a>
%   else:
 / <span aria-current="page">{{part}}</span>
%   end
% end
</nav>

%# _csrf stays the first field: the server checks it before the files stream in.
% resumable = get('resumable')
%# with JavaScript, files over one chunk go through the resumable endpoint (tus)
<form id="upload" method="post" action="{{here}}" enctype="multipart/form-data"\\
% if resumable:
 data-resumable="{{resumable['endpoint']}}" data-chunk-size="{{resumable['chunk_size']}}"\\
% end
>
  <input type="hidden" name="_csrf" value="{{get('csrf') or ''}}">
  <fieldset class="exists"><legend>If a name exists:</legend>
    <label><input type="radio" name="exists" value="keep" checked> keep both</label>
    <label><input type="radio" name="exists" value="replace"> replace</label>
  </fieldset>
  <input type="file" name="file" multiple required>
  <button type="submit">Upload</button>
  <span class="hint">into /{{folder}}</span>
</form>
<ul id="progress"></ul>
% if get('url_import'):
<form id="import" method="post" action="{{here}}">
  <input type="hidden" name="_csrf" value="{{get('csrf') or ''}}">
  <input type="url" name="url" required placeholder="https://…" aria-label="URL to import">
  <input type="text" name="name" placeholder="Name (optional)" aria-label="Name">
  <button type="submit">Import from URL</button>
</form>
% end

<form class="filter" method="get" action="{{here}}">
  <input type="search" name="prefix" value="{{prefix}}" placeholder="Names starting with…" aria-label="Names starting with">
  <button type="submit">Filter</button>
</form>

<div id="entries">
% if not listing.files and not listing.folders:
<p class="empty">No files here yet.</p>
% else:
% kept = [(k, request.query.getunicode(k, default='')) for k in ('prefix', 'owner', 'limit')]
%# Sorting is a GET form per column, not a link: mirroring tools follow every
%# link, and would fetch each sort order of every folder.
<table id="files">
<thead><tr>
% for key, label in (('name', 'Name'), ('size', 'Size'), (None, 'Type'), ('modified', 'Modified (UTC)'), (None, '')):
%   css = key or ('type' if label else 'actions')
%   if key is None:
<th class="{{css}}">{{label}}</th>
%   else:
%     current = key == sort
%     ascending = order == 'asc'
<th class="{{css}}"{{!(' aria-sort="%s"' % ('ascending' if ascending else 'descending')) if current else ''}}>
  <form class="sort" method="get" action="{{here}}">
%     for k, v in kept:
%       if v:
    <input type="hidden" name="{{k}}" value="{{v}}">
%       end
%     end
    <input type="hidden" name="order" value="{{'desc' if current and ascending else 'asc'}}">
    <button type="submit" name="sort" value="{{key}}"{{!' class="current"' if current else ''}}>{{label}}{{!('<span class="arrow" aria-hidden="true"> %s</span>' % ('▲' if ascending else '▼')) if current else ''}}</button>
  </form>
</th>
%   end
% end
</tr></thead>
<tbody>
% for sub in listing.folders:
<tr class="folder"><td class="name"><a href="{{file_url(sub, False)}}">{{sub[len(folder):]}}</a></td><td class="size"></td><td class="type">folder</td><td class="modified"></td><td class="actions"></td></tr>
% end
% for info in listing.files:
% url = file_url(info.name, False)
<tr class="file" data-name="{{info.name}}">
  <td class="name"><a class="open" href="{{url}}">{{info.name[len(folder):]}}</a></td>
  <td class="size" title="{{info.size}} bytes">{{format_size(info.size)}}</td>
  <td class="type">{{info.content_type}}</td>
  <td class="modified"><time datetime="{{info.modified.strftime('%Y-%m-%dT%H:%M:%SZ')}}">{{info.modified.strftime('%Y-%m-%d')}} <span class="time">{{info.modified.strftime('%H:%M:%S')}}</span></time></td>
  <td class="actions">
    <a class="download" href="{{url}}" download="{{info.name.rsplit('/', 1)[-1]}}">Download</a>
    <form class="delete" method="get" action="{{url}}">
      <input type="hidden" name="delete" value="">
      <button type="submit">Delete</button>
    </form>
  </td>
</tr>
% end
</tbody>
</table>
% end
% if next_url:
<p><a class="next" href="{{next_url}}">Next page →</a></p>
% end
</div>
% if resumable:
<script src="/static/tus.min.js"></script>
% end
<script src="/static/upload.js"></script>
