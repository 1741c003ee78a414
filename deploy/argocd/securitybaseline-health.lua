-- Argo CD health check for palisade.dev/v1alpha1 SecurityBaseline.
-- Reads what the operator writes in status (src/controller/status.rs): observedGeneration and
-- the Ready / Degraded / Compliant conditions. Violations are audit results, not health:
-- a Ready baseline with violations is Healthy and the message says how many.
-- Written for Lua 5.1 (Argo CD's interpreter) and tested with Lua 5.4.
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or "Unknown"
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Palisade operator to reconcile this baseline"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for generation " .. tostring(generation) .. " to be reconciled (status describes generation "
    .. tostring(status.observedGeneration or "none") .. ")"
  return hs
end

local ready = condition(status, "Ready")
local degraded = condition(status, "Degraded")
local compliant = condition(status, "Compliant")

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end

if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if ready.status ~= "True" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end

hs.status = "Healthy"
hs.message = describe(ready)
if compliant ~= nil and compliant.status == "False" then
  hs.message = hs.message .. "; " .. (compliant.message or "violations found")
end
return hs
