-- Keep a generation lease alive while its stream runs, and the session's keys with it (the
-- stream's own events leave their expiry alone). Returns 0 when the caller no longer holds it
-- (another task took over after it expired): the caller must stop.
local rec = load_turn(tid)
if not rec or rec.state ~= 'generating' or rec.owner ~= h.owner then return 0 end
rec.lease_until = now + tonumber(h.lease_seconds)
rec.stale_at = rec.lease_until + tonumber(h.stale_after)
save_turn(tid, rec)
touch(h.ttl)
return 1
