% rebase('base', title=account.name)
<h1>{{account.name}}</h1>
<p>Role: <strong>{{account.role}}</strong>. Your files: <a href="/files/?owner=me&amp;format=json">/files/?owner=me</a>.</p>

<h2>API tokens</h2>
% if new_token:
<p>Your new token (shown only now; keep it like a password):</p>
<p class="token-value" id="new-token">{{new_token}}</p>
<p class="hint">curl -H 'Authorization: Bearer {{new_token}}' …</p>
% end
% if tokens:
<table class="listing">
<tr><th>Label</th><th>Id</th><th>Created</th><th></th></tr>
% for token in tokens:
<tr><td>{{token['label'] or '—'}}</td><td><code>{{token['id']}}</code></td><td>{{token['created']}}</td>
  <td><form class="delete" method="post" action="/account/tokens/{{token['id']}}">
    <input type="hidden" name="_csrf" value="{{get('csrf') or ''}}">
    <input type="hidden" name="_method" value="DELETE">
    <button type="submit">Revoke</button></form></td></tr>
% end
</table>
% else:
<p>No tokens yet.</p>
% end
<form class="token panel" method="post" action="/account/tokens">
  <input type="hidden" name="_csrf" value="{{get('csrf') or ''}}">
  <label>Label <input name="label" maxlength="100" placeholder="e.g. backup script"></label>
  <button type="submit">New token</button>
</form>
