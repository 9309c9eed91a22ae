% rebase('base', title=reason)
<h1>{{reason}}</h1>
<p class="error-message">{{message}}</p>
<p><a href="/files/">Back to the files</a></p>
