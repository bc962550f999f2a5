-- wrk script of the image-host mix (loadtest/bench/run.sh): request paths follow a
-- precomputed Zipf sequence over 10,000 images (loadtest/bench/imagehost.py gen); an entry 0
-- is a never-seen upload with a unique URL, which misses the cache (about 10 % of requests).
--
--   IMAGEHOST_TABLE=/path/table.txt IMAGEHOST_NONCE=r1 wrk -t1 -c32 -d10s -s image-host.lua URL
--
-- IMAGEHOST_NONCE must differ between runs against the same cache (else the "uploads" of an
-- earlier run are hits); IMAGEHOST_DELAY_MS > 0 paces each connection (the soak's moderate
-- load: about connections x 1000 / (delay + latency) requests a second).

local sizes, seq = {}, {}
local reqs = {}
local pos, uploads = 1, 0
local nonce = os.getenv("IMAGEHOST_NONCE") or tostring(os.time())
local pause = tonumber(os.getenv("IMAGEHOST_DELAY_MS") or "0")
local next_tid = 0

function setup(thread)
    thread:set("tid", next_tid)
    next_tid = next_tid + 1
end

function init(args)
    local path = os.getenv("IMAGEHOST_TABLE")
    assert(path, "IMAGEHOST_TABLE not set")
    local f = assert(io.open(path, "r"))
    for n in f:read("*l"):gmatch("%d+") do sizes[#sizes + 1] = tonumber(n) end
    for n in f:read("*l"):gmatch("%d+") do seq[#seq + 1] = tonumber(n) end
    f:close()
    for i = 1, #sizes do
        reqs[i] = wrk.format("GET", string.format("/img/%d.jpg?size=%d&ctype=image/jpeg", i, sizes[i]))
    end
    -- Each thread (and run) starts at its own place in the sequence.
    local seed = 0
    for c in (nonce .. tostring(tid)):gmatch(".") do seed = (seed * 31 + c:byte()) % 1000003 end
    pos = seed % #seq + 1
end

function request()
    local id = seq[pos]
    pos = pos % #seq + 1
    if id > 0 then
        return reqs[id]
    end
    uploads = uploads + 1
    local size = sizes[(uploads * 7919) % #sizes + 1]
    return wrk.format("GET", string.format("/img/new-%s-%s-%d.jpg?size=%d&ctype=image/jpeg",
        nonce, tostring(tid), uploads, size))
end

if pause > 0 then
    function delay()
        return pause
    end
end
