-- Transitions finish and fail (and the terminal half of every redelivery). finish appends the
-- reply (ARGV[2]) under the lease holder's name; fail needs no lease, but refuses while another
-- task's lease is live. Both publish the terminal event, leave the queue and hand the session
-- on: the reply carries the parked request of the turn now at the head, if any.
local rec = load_turn(tid)
local state = state_of(rec)
if terminal(state) then return reply('done', {state = state, handoff = handoff()}) end
if not allowed(h.sources, state) then return reply('skip', {state = state}) end
local leased = state == 'generating' and tonumber(rec.lease_until or 0) > now
if h.target == 'completed' then
  if state ~= 'generating' or rec.owner ~= h.owner then return reply('lost') end
  append(2, {h.digest}, {h.tokens}, {h.calls})
elseif leased and h.owner ~= rec.owner then
  return reply('lost')
end
finish_turn(tid, rec or {}, h.target, h.body)
touch(h.ttl)
return reply(h.target, {handoff = handoff()})
