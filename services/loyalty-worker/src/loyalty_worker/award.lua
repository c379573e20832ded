-- Award one transaction, mark it processed and acknowledge its stream entry,
-- all in one atomic step: a redelivered entry can never award twice, and an
-- award can never stay unacknowledged.
--
-- KEYS[1]  the transactions stream
-- KEYS[2]  loyalty:user:<user_id> (hash)
-- KEYS[3]  loyalty:processed:<transaction_id>
-- ARGV[1]  consumer group
-- ARGV[2]  stream entry id
-- ARGV[3]  stamps earned by this transaction (0 or 1; the amount rule is
--          applied by the caller, which holds the exact integer amount)
-- ARGV[4]  stamps per voucher (>= 1)
-- ARGV[5]  username
-- ARGV[6]  lifetime of the processed mark, seconds
--
-- Returns {1, stamps, vouchers, transactions, vouchers_earned} when awarded,
-- {0} when the transaction had been awarded before (the entry is
-- acknowledged again), {-1, reason} when the user's state cannot be updated
-- (nothing is written; the caller dead-letters the entry).
--
-- Failover (Redis Sentinel promoting a replica) cannot make an award count
-- twice either.  Redis replicates a script's effects as one MULTI/EXEC
-- block, so a replica holds all of the award (HSET), the mark (SET) and the
-- acknowledgement (XACK), or none of them.  If the primary dies before the
-- block reached the promoted replica, the new primary has the entry still
-- pending and no mark: it is awarded there once, and the lost award never
-- existed in the history that survives.  If the block did arrive, the mark
-- is there and a redelivery is acknowledged without a second award.

if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  return {0}
end

-- Every check comes before the first write: Redis does not roll a script
-- back, so a failure half-way would leave an award without its mark.
local kind = redis.call('TYPE', KEYS[2])['ok']
if kind ~= 'hash' and kind ~= 'none' then
  return {-1, KEYS[2] .. ' holds a ' .. kind .. ', not a hash'}
end
local names = {'stamps', 'vouchers', 'transactions'}
local current = redis.call('HMGET', KEYS[2], unpack(names))
for i, name in ipairs(names) do
  local value = current[i]
  -- 15 digits keeps every count exact in Lua's double-precision numbers.
  if value and (#value > 15 or not string.match(value, '^%d+$')) then
    return {-1, KEYS[2] .. ' field ' .. name .. ' is not a count: ' .. value}
  end
end

local per_voucher = tonumber(ARGV[4])
local stamps = tonumber(current[1] or '0') + tonumber(ARGV[3])
local earned = math.floor(stamps / per_voucher)
stamps = stamps - earned * per_voucher
local vouchers = tonumber(current[2] or '0') + earned
local transactions = tonumber(current[3] or '0') + 1

redis.call('HSET', KEYS[2],
  'stamps', string.format('%d', stamps),
  'vouchers', string.format('%d', vouchers),
  'transactions', string.format('%d', transactions),
  'username', ARGV[5])
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[6])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return {1, stamps, vouchers, transactions, earned}
