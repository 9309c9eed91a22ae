% rebase('base', title='log in')
<h1>Log in</h1>
% if error:
<p class="error-message" role="alert">{{error}}</p>
% end
<form class="login panel" method="post" action="/login">
  <input type="hidden" name="next" value="{{next}}">
  <label>User name <input name="name" value="{{login_name}}" autocomplete="username" required autofocus></label>
  <label>Password <input type="password" name="password" autocomplete="current-password" required></label>
  <button type="submit">Log in</button>
</form>
<p class="hint">curl: <code>curl -u NAME URL</code>, or a token from your account page:
<code>curl -H 'Authorization: Bearer TOKEN' URL</code>.</p>
