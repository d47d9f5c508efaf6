-- Transitions park and ingest. Join the session's queue; at its head, append the request's new
-- suffix once (a resent or trimmed history is recognised by its overlap), check that every tool
-- result answers a known call, and publish turn_started. Elsewhere in the queue, park the task
-- request for the turn ahead to hand on. A head whose stale mark passed is evicted first.
-- Ingested with room to spare, the turn may begin at once (see h.begin below).
local rec = load_turn(tid)
local state = state_of(rec)
if terminal(state) then return reply('done', {state = state, handoff = handoff()}) end
if not allowed(h.sources, state) then
  return reply('skip', {state = state, compress_queued = rec.compress_queued})
end
if not redis.call('ZSCORE', ORDER, tid) then
  redis.call('ZADD', ORDER, redis.call('HINCRBY', S, 'arrivals', 1), tid)
end
local head = redis.call('ZRANGE', ORDER, 0, 0)[1]
if head ~= tid then
  local other = load_turn(head)
  if other == nil or terminal(other.state) or tonumber(other.stale_at or 0) < now then
    if other ~= nil and not terminal(other.state) then
      local body = cjson.encode({type = 'turn_failed', session_id = h.sid, turn_id = head,
        ts = now, code = 'abandoned', message = h.evicted_message})
      finish_turn(head, other, 'failed', body)
    else
      redis.call('ZREM', ORDER, head)
    end
    head = redis.call('ZRANGE', ORDER, 0, 0)[1]
  end
end
rec = rec or {}
if head ~= tid then
  rec.state, rec.since = 'waiting', now
  save_turn(tid, rec)
  redis.call('HSET', TURNS, tid .. ':request', h.request)
  touch(h.ttl)
  return reply('parked')
end
-- The new suffix. A history turn (the caller sends its whole conversation, as OpenAI clients
-- do) is compared with the session's active messages from the start: where it stops matching,
-- the rest of the active window is an abandoned branch (an edit, a regenerate), kept in the
-- transcript but left out of the window from now on. Otherwise: the request's messages after
-- the longest run of them that repeats the end of the transcript (a client resending all or
-- the last part of its history), at least one.
local n, first = #h.digests, 1
local abandon = {}
local skips = cjson.decode(redis.call('HGET', S, 'branches') or '[]')
local function skipped(index)
  for _, range in ipairs(skips) do
    if index >= range[1] and index < range[2] then return true end
  end
  return false
end
if h.history then
  local all = redis.call('LRANGE', DIGESTS, 0, -1)
  local active = {}
  for i = 1, #all do
    if not skipped(i - 1) then active[#active + 1] = i - 1 end
  end
  local c = 0
  while c < n and c < #active and all[active[c + 1] + 1] == h.digests[c + 1] do c = c + 1 end
  if c > 0 then
    first = c + 1
    local start = tonumber(redis.call('HGET', S, 'window_start') or '0')
    for i = c + 1, #active do
      if active[i] >= start then abandon[#abandon + 1] = active[i] end
    end
  end
end
local span = math.min(n - 1, redis.call('LLEN', DIGESTS))
if first == 1 and span > 0 then
  local tail = redis.call('LRANGE', DIGESTS, -span, -1)
  for k = span, 1, -1 do
    local same = true
    for i = 1, k do
      if tail[span - k + i] ~= h.digests[i] then same = false; break end
    end
    if same then first = k + 1; break end
  end
end
local made = {}
for i = first, n do
  for _, id in ipairs(h.calls[i]) do made[id] = true end
  local answer = h.answers[i]
  if answer ~= '' and not made[answer] and redis.call('SISMEMBER', CALLS, answer) == 0 then
    return reply('invalid', {index = i - 1, tool_call_id = answer})
  end
end
if #abandon > 0 then
  local removed = 0
  for _, index in ipairs(abandon) do
    local last = skips[#skips]
    if last and last[2] == index then last[2] = index + 1 else skips[#skips + 1] = {index, index + 1} end
    removed = removed + cjson.decode(redis.call('LINDEX', T, index)).tokens
  end
  redis.call('HSET', S, 'branches', cjson.encode(skips))
  redis.call('HINCRBY', S, 'window_tokens', -removed)
  redis.call('HINCRBY', S, 'abandoned', #abandon)
end
local digests, tokens, calls = {}, {}, {}
for i = first, n do
  digests[#digests + 1], tokens[#tokens + 1], calls[#calls + 1] =
    h.digests[i], h.tokens[i], h.calls[i]
end
append(first + 1, digests, tokens, calls)
redis.call('HSET', S, 'model', h.model, 'strategy', h.strategy)
redis.call('HSETNX', S, 'encoding', h.encoding)
redis.call('HSETNX', S, 'created_at', h.now)
rec.state, rec.since, rec.stale_at = 'ingested', now, now + tonumber(h.stale_after)
local meta = redis.call('HMGET', S, 'window_tokens', 'encoding')
-- With a begin block (h.begin), a window that needs no compression first (counted in the
-- caller's encoding, at most below tokens) takes the generation lease in this same call, and
-- the turn is counted as begun: KEYS 9 and 10 are then the metrics hash and the sessions index.
local b = h.begin
local begins = b and meta[2] == h.encoding and tonumber(meta[1]) <= tonumber(b.below)
if begins then
  take_lease(rec, b.owner, b.lease_seconds, b.stale_after)
  rec.state = 'generating'
  redis.call('HINCRBY', KEYS[9], b.count, 1)
  redis.call('ZADD', KEYS[10], now, h.sid)
end
save_turn(tid, rec)
-- Kept until the turn ends: the recovery sweep sends it again if the turn's task is lost.
redis.call('HSET', TURNS, tid .. ':request', h.request)
emit(TURNS, EVENTS, CHANNEL, tid, h.started, h.maxlen)
touch(h.ttl)
if begins then return generating(rec) end
return reply('ingested', {appended = #digests, abandoned = #abandon,
  window_tokens = tonumber(meta[1]),
  encoding = meta[2], record = rec})
