% rebase('base', title='mosaic tiles')
<nav class="crumbs"><a href="/files/">files</a> / mosaic tiles</nav>

<p class="intro">Tiles are the small pictures a mosaic is made of: every image added
here becomes a square tile. <a href="/mosaic">Make a mosaic →</a></p>

<form id="tiles-upload" class="panel" method="post" action="/mosaic/tiles" enctype="multipart/form-data">
  <input type="hidden" name="_csrf" value="{{get('csrf') or ''}}">
  <label>A ZIP of images <input type="file" name="zip" accept=".zip,application/zip"></label>
  <label>or images <input type="file" name="image" accept="image/*" multiple></label>
  <button type="submit">Add tiles</button>
</form>
<section id="tiles-job" class="job" hidden aria-live="polite">
  <p class="upload-step"><progress max="100" value="0"></progress> <span class="label">Uploading…</span></p>
  <p class="work-step" hidden><progress></progress> <span class="label">Adding tiles…</span></p>
  <div class="report" hidden></div>
</section>
<p id="tiles-error" class="error-message" role="alert" hidden></p>

<div id="gallery">
<p id="tile-count" class="count" data-count="{{count}}">{{count}} tile{{'' if count == 1 else 's'}} in the library.</p>
% if tiles:
<ul id="tiles" class="tiles">
% for tile in tiles:
% source = tile['meta'].get('source', '')
<li class="tile" data-id="{{tile['id']}}"><a href="{{tile['url']}}"><img src="{{tile['url']}}" alt="{{source or tile['id']}}" title="{{source}} · Lab {{tile['features']['lab']}}" loading="lazy" width="96" height="96"></a>
  <form class="delete" method="post" action="/mosaic/tiles/{{tile['id']}}">
    <input type="hidden" name="_csrf" value="{{get('csrf') or ''}}">
    <input type="hidden" name="_method" value="DELETE">
%   if after:
    <input type="hidden" name="after" value="{{after}}">
%   end
    <button type="submit" title="Delete this tile{{' (' + source + ')' if source else ''}}" aria-label="Delete {{source or 'tile'}}">×</button>
  </form>
</li>
% end
</ul>
% elif not after:
<p class="empty">No tiles yet: add a ZIP of images above.</p>
% end
% if next_url or after:
<p class="pages">
%   if after:
<a class="first" href="/mosaic/tiles">← First page</a>
%   end
%   if next_url:
<a class="next" href="{{next_url}}">Next page →</a>
%   end
</p>
% end
</div>
<script src="/static/mosaic.js" defer></script>
