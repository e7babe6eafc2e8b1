-- The manifests of the event-flood specs (agent_events_flood_spec,
-- agent_output_stall_spec): demo/dns on served_vip:53/UDP with one endpoint
-- (127.0.0.1:backend_port, nobody listening: a datagram needs no one), and
-- demo/empty on empty_vip:80/TCP with none (every connect fails with
-- EHOSTUNREACH, an event each).
--
--   scratch.write_file(path, flood_manifests(SERVED_VIP, EMPTY_VIP, core_env.free_port()))
return function(served_vip, empty_vip, backend_port)
  return table.concat({
    "apiVersion: v1", "kind: Service",
    "metadata: {name: dns, namespace: demo, uid: dns-uid}",
    "spec: {clusterIP: " .. served_vip .. ", ports: [{name: dns, port: 53, protocol: UDP}]}",
    "---",
    "apiVersion: discovery.k8s.io/v1", "kind: EndpointSlice",
    "metadata: {name: dns-1, namespace: demo, labels: {kubernetes.io/service-name: dns}}",
    "addressType: IPv4",
    "ports: [{name: dns, port: " .. backend_port .. ", protocol: UDP}]",
    "endpoints: [{addresses: [127.0.0.1]}]",
    "---",
    "apiVersion: v1", "kind: Service",
    "metadata: {name: empty, namespace: demo, uid: empty-uid}",
    "spec: {clusterIP: " .. empty_vip .. ", ports: [{name: http, port: 80}]}", "" }, "\n")
end
