% rebase('base', title='/' + folder)
% parts = folder.rstrip('/').split('/') if folder else []
<nav class="crumbs"><a href="/files/">files</a>
% for i, part in enumerate(parts):
 / <a href="{{file_url('/'.join(parts[:i + 1]) + '/', False)}}">{{part}}</a>
% end
</nav>

<form id="upload" method="post" action="{{file_url(folder, False)}}" enctype="multipart/form-data">
  <input type="hidden" name="_csrf" value="{{get('csrf') or ''}}">
  <input type="file" name="file" multiple required>
  <button type="submit">Upload</button>
  <span class="hint">into /{{folder}}</span>
</form>
<ul id="progress"></ul>
% if get('url_import'):
<form id="import" method="post" action="{{file_url(folder, False)}}">
  <input type="hidden" name="_csrf" value="{{get('csrf') or ''}}">
  <input type="url" name="url" required placeholder="https://…" aria-label="URL to import">
  <input type="text" name="name" placeholder="Name (optional)" aria-label="Name">
  <button type="submit">Import from URL</button>
</form>
% end

<form class="filter" method="get" action="{{file_url(folder, False)}}">
  <input type="search" name="prefix" value="{{prefix}}" placeholder="Names starting with…">
  <button type="submit">Filter</button>
</form>

% if not listing.files and not listing.folders:
<p class="empty">No files here yet.</p>
% else:
<table id="files">
<thead><tr><th>Name</th><th class="size">Size</th><th>Type</th><th>Modified (UTC)</th><th></th></tr></thead>
<tbody>
% for sub in listing.folders:
<tr class="folder"><td><a href="{{file_url(sub, False)}}">{{sub[len(folder):]}}</a></td><td></td><td>folder</td><td></td><td></td></tr>
% end
% for info in listing.files:
% url = file_url(info.name, False)
<tr class="file" data-name="{{info.name}}">
  <td><a class="open" href="{{url}}">{{info.name[len(folder):]}}</a></td>
  <td class="size" title="{{info.size}} bytes">{{format_size(info.size)}}</td>
  <td>{{info.content_type}}</td>
  <td>{{info.modified.strftime('%Y-%m-%d %H:%M:%S')}}</td>
  <td class="actions">
    <a class="download" href="{{url}}?download">Download</a>
    <form class="delete" method="post" action="{{url}}">
      <input type="hidden" name="_csrf" value="{{get('csrf') or ''}}">
      <input type="hidden" name="_method" value="DELETE">
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
<script src="/static/upload.js"></script>
