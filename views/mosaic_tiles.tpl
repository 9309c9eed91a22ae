% rebase('base', title='mosaic tiles')
<nav class="crumbs"><a href="/files/">files</a> / mosaic tiles</nav>

<form id="tiles-upload" method="post" action="/mosaic/tiles" enctype="multipart/form-data">
  <label>ZIP of images <input type="file" name="zip" accept=".zip,application/zip"></label>
  <label>or images <input type="file" name="image" accept="image/*" multiple></label>
  <button type="submit">Add tiles</button>
</form>

<p class="count">{{count}} tile{{'' if count == 1 else 's'}} in the library.</p>
% if tiles:
<style>.tiles{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:4px}.tiles img{object-fit:cover;display:block}</style>
<ul id="tiles" class="tiles">
% for tile in tiles:
<li class="tile" data-id="{{tile['id']}}"><img src="{{tile['url']}}" alt="{{tile['meta'].get('source', tile['id'])}}" title="{{tile['meta'].get('source', '')}} · Lab {{tile['features']['lab']}}" loading="lazy" width="96" height="96"></li>
% end
</ul>
% end
% if next_url:
<p><a class="next" href="{{next_url}}">Next page →</a></p>
% end
