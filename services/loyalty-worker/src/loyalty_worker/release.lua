-- Remove this worker's consumer from the group at a clean shutdown, but only
-- when it holds no pending entry: XGROUP DELCONSUMER drops the consumer's
-- pending entries, which would then never be delivered again.  Without this,
-- every restart under a default (host-pid) name would leave a consumer
-- behind in XINFO CONSUMERS.
--
-- KEYS[1]  the transactions stream
-- ARGV[1]  consumer group
-- ARGV[2]  consumer name

local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #pending > 0 then
  return -1
end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
