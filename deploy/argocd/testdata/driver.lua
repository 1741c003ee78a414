-- Test driver: runs the health script on one fixture the way Argo CD does (a global `obj`,
-- only the base, string, table and math libraries) and prints status and message, one per line.
-- usage: lua5.4 driver.lua <health script> <fixture as a Lua table constructor>
local script_path, fixture_path = arg[1], arg[2]
local obj = assert(dofile(fixture_path), "fixture must return a table")
local env = {
  obj = obj,
  ipairs = ipairs, pairs = pairs, tostring = tostring, tonumber = tonumber, type = type,
  next = next, select = select, error = error, pcall = pcall,
  string = string, table = table, math = math,
}
local file = assert(io.open(script_path, "r"))
local source = file:read("a")
file:close()
local chunk = assert(load(source, "@" .. script_path, "t", env))
local hs = chunk()
assert(type(hs) == "table", "the script must return a table")
print(hs.status)
print(hs.message)
