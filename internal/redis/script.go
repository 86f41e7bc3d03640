package redis

import goredis "github.com/redis/go-redis/v9"

// Hash fields of a cached entry.
const (
	fieldVersion = "v"
	fieldDeleted = "d"
	fieldValue   = "val"
)

// casScript stores an entry unless the key already holds the same or a newer
// version, then sets its TTL. It returns 1 when it stored the entry, 0 when
// it refused.
//
//	KEYS[1]  the key
//	ARGV[1]  the version (kv.Version.String)
//	ARGV[2]  "1" for a tombstone, "0" for a value
//	ARGV[3]  the value
//	ARGV[4]  the TTL in milliseconds
//
// A key of another type than a hash (WRONGTYPE) is not a cache entry: it is
// what an older kvstack left under a client key's name (its shard marks
// were <prefix>master-mark:N, where the client key "master-mark:N" lives
// now), and is replaced.
//
// Versions are compared byte by byte on purpose: Lua's < on strings uses the
// server's collation (strcoll), which is not the byte order that
// kv.Version.String promises.
var casScript = goredis.NewScript(`
local function newer(a, b)
  if a == b then return false end
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end

local cur = redis.pcall('HGET', KEYS[1], 'v')
if type(cur) == 'table' and cur.err then
  redis.call('DEL', KEYS[1])
  cur = false
end
if cur and not newer(ARGV[1], cur) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2], 'val', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`)
