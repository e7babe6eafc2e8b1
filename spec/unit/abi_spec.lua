local abi = require("balancing.abi")
local ffi = require("ffi")

describe("the shared header through the FFI", function()
  it("declares the map structs with the sizes the C compiler gives them", function()
    assert.equals(8, ffi.sizeof("struct service_key"))
    assert.equals(16, ffi.sizeof("struct service_value"))
    assert.equals(12, ffi.sizeof("struct backend_key"))
    assert.equals(80, ffi.sizeof("struct balancing_event"))
  end)

  it("stores addresses and ports in network byte order", function()
    local key = abi.service_key("10.96.0.10", 53, "UDP", "service")
    local bytes = ffi.cast("uint8_t *", key)
    assert.same({ 10, 96, 0, 10, 0, 53, 17, 0 },
      { bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7] })
    assert.equals("10.96.0.10", abi.u32_to_ipv4(key.address))
    assert.equals(53, abi.ntohs(key.port))
  end)

  it("refuses text that is not a dotted IPv4 address", function()
    for _, text in ipairs({ "10.96.0", "256.1.1.1", "01.2.3.4", "fd00::1", "" }) do
      local value, err = abi.ipv4_to_u32(text)
      assert.is_nil(value)
      assert.matches("not an IPv4 address", err)
    end
  end)

  it("refuses octets over 255 and leading zeros anywhere, and accepts 0 and 255", function()
    for _, text in ipairs({ "1.2.3.256", "1.2.300.4", "1.2.3.1000", "1.02.3.4", "1.2.3.00", "1.2.3.4.",
      " 1.2.3.4", "1.2.3.4 ", "1..2.3", "1.2.3.+4" }) do
      assert.is_nil(abi.ipv4_to_u32(text), text)
      assert.is_nil(abi.ipv4_order(text), text)
    end
    assert.equals("0.0.0.0", abi.u32_to_ipv4(abi.ipv4_to_u32("0.0.0.0")))
    assert.equals("255.255.255.255", abi.u32_to_ipv4(abi.ipv4_to_u32("255.255.255.255")))
  end)

  it("refuses what is not text with the same error", function()
    local value, err = abi.ipv4_to_u32(nil)
    assert.is_nil(value)
    assert.equals("not an IPv4 address: nil", err)
    assert.is_nil(abi.ipv4_order(42))
  end)

  it("orders addresses as numbers and converts that number to the map's u32", function()
    assert.equals(0x0A60000A, abi.ipv4_order("10.96.0.10"))
    assert.is_true(abi.ipv4_order("10.0.0.9") < abi.ipv4_order("10.0.0.10"))
    for _, text in ipairs({ "10.96.0.10", "0.0.0.0", "255.255.255.255", "192.168.1.200", "1.2.3.4" }) do
      assert.equals(abi.ipv4_to_u32(text), abi.ipv4_order_to_u32(abi.ipv4_order(text)))
    end
  end)

  it("names every failure reason of the header", function()
    for reason = abi.C.REASON_OK, abi.C.REASON_REDIRECT_LIMIT do
      assert.is_string(abi.reason_names[reason])
    end
    assert.is_nil(abi.reason_names[abi.C.REASON_REDIRECT_LIMIT + 1])
  end)

  it("gives a NodePort frontend the wildcard address 0", function()
    assert.equals(0, abi.service_key("*", 30080, "TCP", "service").address)
  end)
end)
