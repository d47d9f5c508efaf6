-- Shared by every ledger script (after eventlog's emit). KEYS are always, in this order:
-- 1 session hash, 2 transcript list, 3 message digest list, 4 ledger hash, 5 order zset,
-- 6 tool-call set, 7 event stream, 8 channel (ingest may name two more, see there).
-- ARGV[1] is a JSON header; later ARGV are raw transcript entries.
local S, T, DIGESTS, TURNS, ORDER, CALLS, EVENTS, CHANNEL =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local h = cjson.decode(ARGV[1])
local tid, now = h.tid, tonumber(h.now)

local function load_turn(turn_id)
  local raw = redis.call('HGET', TURNS, turn_id)
  if raw then return cjson.decode(raw) end
  return nil
end

local function save_turn(turn_id, rec)
  redis.call('HSET', TURNS, turn_id, cjson.encode(rec))
end

local function state_of(rec)
  if rec then return rec.state end
  return 'new'
end

local function allowed(sources, state)
  return string.find(',' .. sources .. ',', ',' .. state .. ',', 1, true) ~= nil
end

local function terminal(state)
  return state == 'completed' or state == 'failed'
end

local function touch(ttl)
  for i = 1, 7 do redis.call('EXPIRE', KEYS[i], ttl) end
end

-- The session's head turn, if it is parked: its task request, for the caller to send again.
-- Handing on refreshes its stale mark: past it, the recovery sweep sends a lost hand-on again
-- (and, once its resends are used up, the next arrival evicts it).
local function handoff()
  local head = redis.call('ZRANGE', ORDER, 0, 0)[1]
  if not head then return false end
  local rec = load_turn(head)
  if rec and rec.state == 'waiting' then
    rec.stale_at = now + tonumber(h.stale_after)
    save_turn(head, rec)
    return redis.call('HGET', TURNS, head .. ':request') or false
  end
  return false
end

-- Append transcript entries ARGV[first..] with their digests, tokens and tool calls.
local function append(first, digests, tokens, calls)
  local added = 0
  for i = 1, #digests do
    redis.call('RPUSH', T, ARGV[first + i - 1])
    redis.call('RPUSH', DIGESTS, digests[i])
    added = added + tokens[i]
    for _, id in ipairs(calls[i]) do redis.call('SADD', CALLS, id) end
  end
  redis.call('HSET', S, 'updated_at', h.now)
  redis.call('HINCRBY', S, 'messages', #digests)
  redis.call('HINCRBY', S, 'window_tokens', added)
  redis.call('HINCRBY', S, 'total_tokens', added)
end

-- End a turn: publish its terminal event, record the state, leave the session's queue.
local function finish_turn(turn_id, rec, state, body)
  emit(TURNS, EVENTS, CHANNEL, turn_id, body, h.maxlen)
  rec.state, rec.owner, rec.lease_until = state, nil, nil
  save_turn(turn_id, rec)
  redis.call('HDEL', TURNS, turn_id .. ':text', turn_id .. ':tools', turn_id .. ':request')
  redis.call('ZREM', ORDER, turn_id)
end

-- Take the generation lease for owner: a new attempt, stale one grace period after the lease.
local function take_lease(rec, owner, lease_seconds, grace)
  rec.owner = owner
  rec.lease_until = now + tonumber(lease_seconds)
  rec.stale_at = rec.lease_until + tonumber(grace)
  rec.attempt = (rec.attempt or 0) + 1
end

local function reply(outcome, extra)
  local out = extra or {}
  out.outcome = outcome
  return cjson.encode(out)
end

-- The reply of a turn that now holds the lease, with what generation needs in the same round
-- trip: the text earlier attempts published and the working window (session fields, then the
-- transcript entries from its start).
local function generating(rec)
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
end
