-- Transitions compress_first, compress_queued, begin and retry: move the turn between non-terminal
-- states (compress_queued stays in compressing and marks its compression as sent).
-- begin takes the generation lease (a task id and an expiry); a live lease of another task
-- refuses; retry releases the lease by compare-and-delete and counts the attempt.
-- begin also returns what generation needs in the same round trip (see generating).
local rec = load_turn(tid)
local state = state_of(rec)
if terminal(state) then return {reply('done', {state = state, handoff = handoff()})} end
if not allowed(h.sources, state) then return {reply('skip', {state = state})} end
local foreign = state == 'generating' and rec.owner ~= h.owner
if h.target == 'generating' then
  if foreign and tonumber(rec.lease_until or 0) > now then
    return {reply('busy', {lease_until = rec.lease_until})}
  end
  take_lease(rec, h.owner, h.lease_seconds, h.stale_after)
else
  if foreign then return {reply('lost')} end
  rec.owner, rec.lease_until = nil, nil
  rec.stale_at = now + tonumber(h.stale_after)
end
for k, v in pairs(h.set or {}) do rec[k] = v end
if h.count then rec[h.count] = (rec[h.count] or 0) + 1 end
rec.state = h.target
save_turn(tid, rec)
touch(h.ttl)
if h.target ~= 'generating' then return {reply('advanced', {record = rec})} end
return generating(rec)
