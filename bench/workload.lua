-- wrk script for `make bench`: every request names an output never asked for before (or, for
-- uploads, sends an original never seen before), so that each one makes work for the server.
--   wrk ... -s workload.lua URL -- MODE THREADS OFFSET ARGS...
--   fill   THREADS FOLDERS MIN MAX EXT    <W>x<H>.EXT, W and H in MIN..MAX
--   width  THREADS FOLDERS MIN MAX EXT    w<W>.EXT
--   square THREADS FOLDERS MIN MAX EXT    x<S>.EXT
--   paths  THREADS FILE                   the paths listed in FILE, in turn (cache hits)
--   upload THREADS FILE NAMESPACE OUTPUTS POST the JPEG in FILE, with a new comment each time
-- FOLDERS is a comma-separated list of image folders (/p/6e0/072/682/e66...): several copies of one
-- source multiply the names available. A folder with "%s" in it is the peer's (thumbor's) path, the
-- size put in its place: WxH, Wx0 for w<W>, SxS for x<S> (/unsafe/%s/web-800x600.jpg).
-- At the end, one line "BENCH_JSON {...}" gives the figures.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local function split(text)
  local parts = {}
  for part in string.gmatch(text, "[^,]+") do table.insert(parts, part) end
  return parts
end

-- A stride coprime with n visits every number below n once per n steps, sizes spread over the range.
local function stride_for(n)
  local function gcd(a, b) while b ~= 0 do a, b = b, a % b end return a end
  local s = math.floor(n * 0.618) + 1
  while gcd(s, n) ~= 1 do s = s + 1 end
  return s
end

function init(args)
  mode, nthreads, offset = args[1], tonumber(args[2]), tonumber(args[3])
  table.remove(args, 3)  -- OFFSET (where a warm-up run stopped) is the same in every mode
  counter, made, hits, bad = 0, 0, 0, 0
  if mode == "paths" then
    paths = {}
    for line in io.lines(args[3]) do table.insert(paths, line) end
    response = nil  -- the fastest path for wrk: no Lua per response (wrk still counts non-2xx)
  elseif mode == "upload" then
    local f = assert(io.open(args[3], "rb"))
    jpeg = f:read("*a")
    f:close()
    upload_path = "/" .. args[4] .. "?outputs=" .. args[5]
  else
    folders, low, high, ext = split(args[3]), tonumber(args[4]), tonumber(args[5]), args[6]
    span = high - low + 1
    names = (mode == "fill") and span * span or span
    stride = stride_for(names)
  end
end

local function output_name(k)
  local i = (k * stride) % names
  if mode == "fill" then
    return string.format("%dx%d.%s", low + i % span, low + math.floor(i / span), ext)
  elseif mode == "width" then
    return string.format("w%d.%s", low + i, ext)
  end
  return string.format("x%d.%s", low + i, ext)
end

local function peer_size(k)
  local i = (k * stride) % names
  if mode == "fill" then
    return string.format("%dx%d", low + i % span, low + math.floor(i / span))
  elseif mode == "width" then
    return string.format("%dx0", low + i)
  end
  return string.format("%dx%d", low + i, low + i)
end

function request()
  local k = offset + counter * nthreads + id
  counter = counter + 1
  if mode == "paths" then
    return wrk.format("GET", paths[k % #paths + 1])
  elseif mode == "upload" then
    -- A JPEG comment segment (FF FE, length) right after the start marker makes new bytes, a new hash.
    local note = string.format("bench upload %d", k)
    local segment = "\255\254" .. string.char(0, #note + 2) .. note
    local body = jpeg:sub(1, 2) .. segment .. jpeg:sub(3)
    return wrk.format("POST", upload_path, {["Content-Type"] = "image/jpeg"}, body)
  end
  local folder = folders[math.floor(k / names) % #folders + 1]
  if string.find(folder, "%s", 1, true) then
    return wrk.format("GET", string.format(folder, peer_size(k)))
  end
  return wrk.format("GET", folder .. "/" .. output_name(k))
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
  elseif headers["X-Image-Cache"] == "hit" then
    hits = hits + 1
  else
    made = made + 1
  end
end

function done(summary, latency, requests)
  local made_total, hits_total, bad_total = 0, 0, 0
  for _, thread in ipairs(threads) do
    made_total = made_total + thread:get("made")
    hits_total = hits_total + thread:get("hits")
    bad_total = bad_total + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "seconds": %.3f, "p50_ms": %.2f, "p99_ms": %.2f, ' ..
    '"max_ms": %.2f, "made": %d, "hits": %d, "not_ok": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, made_total, hits_total,
    math.max(bad_total, e.status),
    e.connect + e.read + e.write + e.timeout))
end
