-- The recovery sweep's look at a session (no state change): if its head turn stopped making
-- progress, count a resend and return the turn's task request for the sweep to send again.
-- An ingested or generating head is due one grace period after its last sign of progress:
-- ingest, a scheduled retry, its lease's expiry (a live stream keeps renewing it), a resend.
-- A compressing head, or a parked one handed the session, is due at its stale mark instead: a
-- compression may run for the longest task, and a handed-on task may wait behind a backlog.
-- Answers idle (nothing live: stop watching), wait (look again at `at`), resend, or given_up
-- (resends used up: the next arrival's stale eviction remains).
local head = redis.call('ZRANGE', ORDER, 0, 0)[1]
local rec = head and load_turn(head)
if not rec or terminal(rec.state) then return reply('idle') end
local grace = tonumber(h.grace)
local resent_at = tonumber(rec.resent_at or 0)
local due
if rec.state == 'ingested' or rec.state == 'generating' then
  due = math.max(tonumber(rec.since or 0), tonumber(rec.retry_at or 0),
    tonumber(rec.lease_until or 0), resent_at) + grace
else
  due = math.max(tonumber(rec.stale_at or 0), resent_at + grace)
end
if now < due then return reply('wait', {at = due}) end
local request = redis.call('HGET', TURNS, head .. ':request')
if not request or (rec.resent or 0) >= tonumber(h.max_resends) then
  return reply('given_up', {turn_id = head, state = rec.state})
end
rec.resent, rec.resent_at = (rec.resent or 0) + 1, now
-- A resent ingest of a compressing turn sends its compression again.
rec.compress_queued = nil
save_turn(head, rec)
return reply('resend', {turn_id = head, state = rec.state, request = request,
  at = now + grace})
