-- Move one entry to the dead-letter stream and acknowledge it, atomically,
-- so that it is neither lost (acknowledged without a dead letter) nor kept
-- blocking the queue (dead-lettered but still pending).
--
-- KEYS[1]  the transactions stream
-- KEYS[2]  the dead-letter stream
-- ARGV[1]  consumer group
-- ARGV[2]  stream entry id
-- ARGV[3..] field, value, ... of the dead letter
--
-- Returns 1 when dead-lettered, 0 when the entry was no longer pending
-- (another worker settled it first; writing a second dead letter would
-- only confuse whoever replays them).

local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 then
  return 0
end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return 1
