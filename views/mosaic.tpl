% rebase('base', title='make a mosaic')
<nav class="crumbs"><a href="/files/">files</a> / make a mosaic</nav>

<p id="library-count" class="count">{{tiles}} tile{{'' if tiles == 1 else 's'}} in the library (<a href="/mosaic/tiles">add tiles</a>).</p>
%   if not tiles:
<p class="warning">The tile library is empty: <a href="/mosaic/tiles">add tiles</a> before making a mosaic.</p>
%   end
<form id="mosaic-form" class="panel" method="post" action="/mosaic" enctype="multipart/form-data">
  <input type="hidden" name="_csrf" value="{{get('csrf') or ''}}">
  <fieldset class="source"><legend>Source image</legend>
  <label>Upload an image <input type="file" name="image" accept="image/*"></label>
  <label>or a stored one
    <select name="source">
      <option value="">{{'(choose a stored image)' if images or mosaics else '(no images stored yet)'}}</option>
%   for group, names in (('Images', images), ('Earlier mosaics', mosaics)):
%     if names:
      <optgroup label="{{group}}">
%       for name in names:
        <option value="{{name}}"{{!' selected' if name == selected else ''}}>{{name}}</option>
%       end
      </optgroup>
%     end
%   end
    </select></label>
  <p class="hint">An uploaded image wins over a stored one.</p>
  </fieldset>
  <fieldset class="params"><legend>Parameters</legend>
  <label>Tile size <input type="number" name="tile" min="4" max="{{limits.max_tile}}" value="{{params.tile}}" required> <span class="hint">px, 4–{{limits.max_tile}}</span></label>
  <label>Columns <input type="number" name="cols" min="1" max="{{limits.max_cols}}" value="{{params.cols}}" required> <span class="hint">tiles across; rows follow the image</span></label>
  <label>Max repeats <input type="number" name="max_repeats" min="0" value="{{params.max_repeats}}"> <span class="hint">uses of one tile, 0 = no limit</span></label>
  <label>Blend <input type="number" name="blend" min="0" max="100" value="{{params.blend}}"> <span class="hint">% of the source laid over the tiles</span></label>
  <label>Format <select name="format">
%   for value, label in (('jpeg', 'JPEG'), ('png', 'PNG')):
    <option value="{{value}}"{{!' selected' if value == params.format else ''}}>{{label}}</option>
%   end
  </select></label>
  </fieldset>
  <button type="submit">Make mosaic</button>
</form>
<section id="mosaic-job" class="job" hidden aria-live="polite">
  <p class="upload-step"><progress max="100" value="0"></progress> <span class="label">Uploading…</span></p>
  <p class="work-step" hidden><progress></progress> <span class="label">Waiting…</span></p>
</section>
<p id="mosaic-error" class="error-message" role="alert" hidden></p>

% if result:
<section id="result">
<h2>Result</h2>
%   if info is None:
<p class="error-message">No mosaic named “{{result}}” is stored.</p>
%   else:
<p class="links"><a class="open" href="{{result_url}}">{{result}}</a> · <a class="download" href="{{result_url}}?download">Download</a></p>
<p class="details">{{format_size(info.size)}}{{', from ' + source if source else ''}}</p>
<a class="image" href="{{result_url}}"><img class="mosaic" src="{{result_url}}" alt="mosaic {{result}}"></a>
%   end
</section>
% end
<script src="/static/mosaic.js" defer></script>
