"""The Redis store's Lua scripts: each check-then-count is one script, so it is atomic on the
server (registered once per client, then run by its SHA: EVALSHA). A refusal writes nothing.
The keys of one script share a hash tag (`{...}`), so they live on one Redis Cluster slot."""

# KEYS: rpm window (zset), characters today (string), stream leases (zset)
# ARGV: now, rpm (-1: none), chars/day (-1), streams (-1), chars, lease ('' none),
#       lease expiry, rpm member, chars key ttl, leases key ttl, window start (now - 60)
RESERVE = """
local rpm = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local streams = tonumber(ARGV[4])
local chars = tonumber(ARGV[5])
local lease = ARGV[6]
if lease ~= '' and streams >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
  if redis.call('ZCARD', KEYS[3]) >= streams then return {'streams', '1'} end
end
if rpm >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[11])
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {'rate', oldest[2]}
  end
end
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if cap >= 0 and used + chars > cap then return {'chars', '0'} end
if rpm >= 0 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[8])
  redis.call('EXPIRE', KEYS[1], 120)
end
if chars > 0 then
  redis.call('INCRBY', KEYS[2], chars)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[9]))
end
if lease ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[7], lease)
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[10]))
end
return {'ok', '0'}
"""

# KEYS: characters today. ARGV: chars/day (-1: none), chars, key ttl
CHARGE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local cap = tonumber(ARGV[1])
local chars = tonumber(ARGV[2])
if cap >= 0 and used + chars > cap then return 0 end
redis.call('INCRBY', KEYS[1], chars)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""

# KEYS: terms (hash), meta (hash), the owner's glossaries (set)
# ARGV: name, terms JSON, meta JSON, max per owner
CREATE_GLOSSARY = """
if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""

# KEYS: the owner's sessions (zset: session → last use), the session's turns (list)
# ARGV: session, turn, now, max turns, max sessions, key ttl (s), cutoff (now - ttl),
#       the prefix of the owner's session lists
ADD_TURN = """
local prev = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not prev) or tonumber(prev) < tonumber(ARGV[7]) then redis.call('DEL', KEYS[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[7])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[5])
if extra > 0 then
  local gone = redis.call('ZPOPMIN', KEYS[1], extra)
  for i = 1, #gone, 2 do redis.call('DEL', ARGV[8] .. gone[i]) end
end
return 1
"""
