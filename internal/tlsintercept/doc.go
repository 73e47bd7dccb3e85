// Package tlsintercept lets a sandbox use API keys its guest never sees. The
// guest's environment holds a placeholder ("$MSB_<ENV>"); the sandbox process
// terminates the guest's TLS to intercepted ports with a leaf signed by a
// per-home CA the guest trusts, and swaps placeholder for value in the
// request headers it re-sends, over verified TLS, to the hosts the secret is
// allowed for. A placeholder headed anywhere else is a violation: the request
// is blocked with a 403 and never leaves the sandbox process.
//
//	guest ──TLS (leaf minted for SNI)──► Handle ──TLS verified for SNI──► origin
//	                                       │ peek ClientHello: bypassed SNI → byte splice
//	                                       │ http.Server (HTTP/1.1, 64 KiB headers)
//	                                       │   check target + headers, substitute, or 403
//	                                       │ ReverseProxy + private Transport (lazy dial)
//	guest ──plain CONNECT host:443──► HandleConnect ──same CONNECT──► user's proxy
//	                                       └─ 2xx: the tunnel is handled as above
//
// This package is a library; internal/netstack routes flows to it. It does
// not log except through Config.Logger, never logs a secret's value, and
// joins every goroutine it starts before Handle returns.
//
// # Decisions
//
// HTTP/2 and HTTP/1.1: the guest is offered ALPN "h2" and "http/1.1", and
// net/http's server decodes either into the same http.Request, which the
// same handler checks and rewrites; there is no second parser of guest
// bytes. The origin is spoken to in HTTP/1.1. gRPC works as far as net/http
// relays it over HTTP/1.1 to the origin, which is not at all (trailers and
// bidirectional streams need h2 end to end): bypass such hosts.
//
// Host identity: a secret rides on a request only when the SNI (the name the
// origin's certificate is verified for) and the Host header, if it names
// another host, are both allowed. Without SNI the destination IP is the
// identity. Hosts in Secret.Hosts are intercepted even if Bypass matches.
//
// Where placeholders are looked for: every request header name and value,
// inside Basic credentials (decoded, substituted, re-encoded), and the
// request target (raw and percent-decoded). Only header values are
// substituted; a placeholder in the target is allowed through unchanged to an
// allowed host and is a violation elsewhere. Bodies and trailers are streamed
// untouched (Content-Length or chunked, re-framed by net/http).
//
// Responses: unlike microsandbox, the response to a request that carried a
// secret is scrubbed, value → placeholder, in its headers and, when it is not
// content-encoded, its body (the request is sent with Accept-Encoding:
// identity for that reason). An origin echoing the key (a debug endpoint, an
// "invalid key sk-…" error) would otherwise hand it to the guest. Encoded
// forms of the value (base64, JSON escapes), encoded bodies and trailers are
// not scrubbed.
//
// HTTPS_PROXY: when the guest's proxy is outside the sandbox process, the
// guest's TLS still starts at its own TCP connection — to the proxy — so the
// stack routes the proxy's port to HandleConnect, which forwards the CONNECT
// unchanged and intercepts the tunnelled TLS as if it were direct (the
// upstream microsandbox bug was substituting only on direct flows). Origins
// reached through the proxy are verified end to end, through the tunnel.
// Plain-text proxying (GET http://…) is spliced uninspected, as plain HTTP is
// on any port: secrets need a verified TLS identity.
//
// Upstream failures: an origin whose certificate does not verify, or that
// cannot be reached, gets nothing from the guest; the guest gets a 502 on the
// intercepted connection, whose body says why.
//
// Clock skew: the CA and every leaf are backdated by a day, so a guest whose
// clock is up to a day behind the host still accepts them.
//
// # Wiring (for internal/netstack and the sandbox process)
//
//   - Once: LoadOrCreateCA(<home>/tls) or LoadCA(user PEM); write CertPEM
//     where agentd installs it; New(Config); put Env=placeholder in the
//     guest environment for every secret.
//   - Per guest TCP SYN the policy allowed: if Intercepts(dst IP, port),
//     accept the SYN and run Handle(ctx, gonetConn, "ip:port", dial) in
//     place of splice. Prefer a lazy dial (dial on call) so a blocked
//     request never opens a connection to the origin; a pre-dialled conn
//     must be returned by the first call only, later calls dial afresh.
//   - Flows to a configured HTTP proxy's ip:port: HandleConnect.
//   - Drop UDP (QUIC) to intercepted ports so clients fall back to TCP.
//   - Config.Violation under BlockAndTerminate: stop the sandbox (reason
//     Signal); Handle/HandleConnect then return ErrTerminated.
package tlsintercept
