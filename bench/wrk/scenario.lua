-- One benchmark scenario for wrk (Debian's wrk 4.1, LuaJIT). bench/driver/wrk.py runs it as
--   wrk -tT -cC -dDs --latency -s bench/wrk/scenario.lua BASE_URL -- MODE TOKEN IDS_FILE [PATH]
-- MODE: get (GET /events/{random id}), list (GET PATH), post (POST /events), put (PUT
-- /events/{random id}, every field), patch (PATCH /events/{random id}, merge patch), delete
-- (DELETE /events/{id}, each id once), mix (80% get, 20% post). Ids come from IDS_FILE, one a
-- line; delete's from IDS_FILE.N for thread N (bench/driver/wrk.py splits them), in order.
-- done() prints the summary as one JSON line prefixed with "WRK_JSON ".

local threads = {}
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("thread_number", counter)
    table.insert(threads, thread)
end

local mode, token, path
local ids = {}
local next_delete = 0
local auth = {}
local json_headers = {}
local patch_headers = {}

local function load_ids(file)
    local list = {}
    for line in io.lines(file) do
        local id = tonumber(line)
        if id then list[#list + 1] = id end
    end
    return list
end

function init(args)
    mode = args[1]
    token = args[2]
    path = args[4] or "/events?limit=50"
    math.randomseed(os.time() * 1000 + (thread_number or 0) * 7919)
    if mode == "delete" then
        ids = load_ids(args[3] .. "." .. thread_number)
    elseif mode ~= "list" and mode ~= "post" then
        ids = load_ids(args[3])
    end
    auth = { ["Authorization"] = "Bearer " .. token }
    json_headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
    patch_headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/merge-patch+json" }
end

local function get_request()
    return wrk.format("GET", "/events/" .. ids[math.random(#ids)], auth)
end

local function post_request()
    local body = string.format(
        '{"title":"Bench event %d","description":"created by bench","date":"2025-%02d-%02d"}',
        math.random(1000000), math.random(12), math.random(28))
    return wrk.format("POST", "/events", json_headers, body)
end

local function put_request()
    local body = string.format(
        '{"title":"Replaced %d","description":"replaced by bench","date":"2025-%02d-%02d"}',
        math.random(1000000), math.random(12), math.random(28))
    return wrk.format("PUT", "/events/" .. ids[math.random(#ids)], json_headers, body)
end

local function patch_request()
    local body = string.format('{"title":"Patched %d"}', math.random(1000000))
    return wrk.format("PATCH", "/events/" .. ids[math.random(#ids)], patch_headers, body)
end

local function delete_request()
    next_delete = next_delete + 1
    -- Running out would delete an id twice (a 404): the driver seeds more than a run can delete.
    if next_delete > #ids then error("thread " .. thread_number .. " deleted its " .. #ids .. " ids") end
    return wrk.format("DELETE", "/events/" .. ids[next_delete], auth)
end

function request()
    if mode == "get" then
        return get_request()
    elseif mode == "list" then
        return wrk.format("GET", path, auth)
    elseif mode == "post" then
        return post_request()
    elseif mode == "put" then
        return put_request()
    elseif mode == "patch" then
        return patch_request()
    elseif mode == "delete" then
        return delete_request()
    elseif mode == "mix" then
        if math.random(100) <= 80 then return get_request() end
        return post_request()
    end
    error("unknown mode " .. tostring(mode))
end

function done(summary, latency, requests)
    local percentiles = {}
    for _, p in ipairs({ 50, 75, 90, 95, 99, 99.9 }) do
        percentiles[#percentiles + 1] = string.format('"%s":%d', tostring(p), latency:percentile(p))
    end
    local e = summary.errors
    io.write(string.format(
        'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
        '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
        '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f,"percentiles":{%s}}}\n',
        summary.requests, summary.duration, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency.min, latency.max, latency.mean, latency.stdev, table.concat(percentiles, ",")))
end
