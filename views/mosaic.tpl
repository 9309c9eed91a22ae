% rebase('base', title='make a mosaic')
<nav class="crumbs"><a href="/files/">files</a> / <a href="/mosaic/tiles">mosaic tiles</a> / make a mosaic</nav>

% if tiles is None:
<p class="error-message">This storage backend has no tile index, so it cannot make mosaics.</p>
% else:
<p class="count">{{tiles}} tile{{'' if tiles == 1 else 's'}} in the library (<a href="/mosaic/tiles">add tiles</a>).</p>
<form id="mosaic-form" method="post" action="/mosaic" enctype="multipart/form-data">
  <fieldset><legend>Source image</legend>
  <label>Upload <input type="file" name="image" accept="image/*"></label>
  <label>or a stored image
    <select name="source"><option value="">(none)</option>
% for name in images:
      <option value="{{name}}"{{!' selected' if name == result else ''}}>{{name}}</option>
% end
    </select></label>
  </fieldset>
  <fieldset><legend>Parameters</legend>
  <label>Tile size (px) <input type="number" name="tile" min="4" value="{{params.tile}}"></label>
  <label>Columns <input type="number" name="cols" min="1" value="{{params.cols}}"></label>
  <label>Max repeats per tile (0 = no limit) <input type="number" name="max_repeats" min="0" value="{{params.max_repeats}}"></label>
  <label>Blend source (%) <input type="number" name="blend" min="0" max="100" value="{{params.blend}}"></label>
  <label>Format <select name="format"><option value="jpeg">JPEG</option><option value="png">PNG</option></select></label>
  </fieldset>
  <button type="submit">Make mosaic</button>
</form>
<div id="mosaic-progress" hidden><progress max="1" value="0"></progress> <span class="stage"></span></div>
% end

% if result:
<section id="result">
<h2>Result</h2>
<p><a href="{{result_url}}">{{result}}</a> · <a href="{{result_url}}?download">download</a></p>
<img src="{{result_url}}" alt="mosaic {{result}}" style="max-width:100%">
</section>
% end
<script src="/static/mosaic.js" defer></script>
