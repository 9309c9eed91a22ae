% # A tile import's report: one line per reason for skipping, its entries folded away.
% skipped = result.get('skipped') or {}
% added, repaired = result.get('added', 0), len(result.get('repaired') or [])
% count = sum(group['count'] for group in skipped.values())
<div class="report">
<p class="summary">Added {{added}} tile{{'' if added == 1 else 's'}}{{', restored %d missing image%s' % (repaired, '' if repaired == 1 else 's') if repaired else ''}}, skipped {{count}} in {{result.get('seconds', 0)}} s.</p>
% if skipped:
<ul class="skipped">
%   for reason, group in sorted(skipped.items(), key=lambda item: -item[1]['count']):
<li><details><summary><span class="reason">{{reason}}</span>: <span class="count">{{group['count']}}</span></summary>
<ul class="entries">
%     for item in group['entries']:
<li><code>{{item['entry']}}</code>{{': ' + item['detail'] if item['detail'] else ''}}</li>
%     end
</ul>
</details></li>
%   end
</ul>
% end
</div>
