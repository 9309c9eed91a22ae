% rebase('base', title='delete ' + info.name)
<h1 class="confirm">Delete {{info.name}}?</h1>
<p class="details">{{format_size(info.size)}}, {{info.content_type}}, modified {{info.modified.strftime('%Y-%m-%d %H:%M:%S')}} UTC.</p>
<form class="confirm-delete" method="post" action="{{url}}">
  <input type="hidden" name="_csrf" value="{{get('csrf') or ''}}">
  <input type="hidden" name="_method" value="DELETE">
  <button type="submit" class="danger">Delete</button>
  <a class="cancel" href="{{folder_url}}">Cancel</a>
</form>
