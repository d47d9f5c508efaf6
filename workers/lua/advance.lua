-- Transitions compress_first, compress_queued, begin and retry: move the turn between non-terminal
-- states (compress_queued stays in compressing and marks its compression as sent).
-- begin takes the generation lease (a task id and an expiry); a live lease of another task
-- refuses; retry releases the lease by compare-and-delete and counts the attempt.
-- begin also returns what generation needs in the same round trip: the text earlier attempts
-- published and the working window (session fields, then transcript entries from its start).
local rec = load_turn(tid)
local state = state_of(rec)
if terminal(state) then return {reply('done', {state = state, handoff = handoff()})} end
if not allowed(h.sources, state) then return {reply('skip', {state = state})} end
local foreign = state == 'generating' and rec.owner ~= h.owner
if h.target == 'generating' then
  if foreign and tonumber(rec.lease_until or 0) > now then
    return {reply('busy', {lease_until = rec.lease_until})}
  end
  rec.owner = h.owner
  rec.lease_until = now + tonumber(h.lease_seconds)
  rec.stale_at = rec.lease_until + tonumber(h.stale_after)
  rec.attempt = (rec.attempt or 0) + 1
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
local published = redis.call('HMGET', TURNS, tid .. ':text', tid .. ':tools')
local meta = redis.call('HMGET', S, 'window_start', 'summary', 'pinned', 'encoding', 'branches')
local out = {reply('generating', {record = rec, published = published[1] or '',
  tools_published = published[2] == '1', window_start = tonumber(meta[1] or '0'),
  summary = meta[2] or '', pinned = meta[3] or '[]', encoding = meta[4] or '',
  branches = meta[5] or '[]'})}
for _, entry in ipairs(redis.call('LRANGE', T, tonumber(meta[1] or '0'), -1)) do
  out[#out + 1] = entry
end
return out
