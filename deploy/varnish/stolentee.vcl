vcl 4.1;
# Varnish in front of stolentee as the CDN of its files (/uploads/, /assets/), with purge.
#
# - Only GET and HEAD of /uploads/ and /assets/ are cached; everything else (the API) passes.
# - The TTL is the origin's CDN-Cache-Control max-age (1 day for uploads, 7 days for assets);
#   Cache-Control's stale-while-revalidate (7 days for uploads) becomes grace: a stale upload is
#   served at once while Varnish revalidates it in the background (If-None-Match, 304).
# - Errors are not cached: the origin sends Cache-Control: no-store with every error.
# - PURGE <path> from an address in the purgers ACL evicts the object and its variants; the
#   service sends it when a design is deleted (STOLENTEE_CDN_PURGE_BACKEND=varnish,
#   STOLENTEE_CDN_PURGE_URL=http://<this varnish>). One site per Varnish: the cache key is the
#   URL alone, so a purge needs no Host header.
#
# Start: varnishd -a :6081 -f /etc/varnish/stolentee.vcl -s malloc,256m
# Set the backend below to the stolentee service (or a load balancer in front of it).
import std;

backend stolentee {
    .host = "127.0.0.1";
    .port = "8000";
    .connect_timeout = 2s;
    .first_byte_timeout = 60s;
    .probe = {
        .url = "/readyz";
        .interval = 2s;
        .timeout = 1s;
        .window = 3;
        .threshold = 2;
    }
}

# Who may purge: the stolentee processes (API and workers). Add their private network.
acl purgers {
    "127.0.0.1";
    "::1";
    "10.0.0.0"/8;
    "172.16.0.0"/12;
    "192.168.0.0"/16;
}

sub vcl_recv {
    if (req.method == "PURGE") {
        if (client.ip !~ purgers) {
            return (synth(403, "Purge not allowed from this address"));
        }
        return (purge);
    }
    if (req.url !~ "^/(uploads|assets)/" || (req.method != "GET" && req.method != "HEAD")) {
        return (pass);
    }
    unset req.http.Cookie;
    unset req.http.Authorization;
    return (hash);
}

sub vcl_hash {
    hash_data(req.url);
    return (lookup);
}

sub vcl_backend_response {
    if (bereq.url ~ "^/(uploads|assets)/" && beresp.status == 200) {
        if (beresp.http.CDN-Cache-Control ~ "max-age=[0-9]+") {
            set beresp.ttl = std.duration(
                regsub(beresp.http.CDN-Cache-Control, "^.*max-age=([0-9]+).*$", "\1") + "s", 0s);
        }
        if (beresp.http.Cache-Control ~ "stale-while-revalidate=[0-9]+") {
            set beresp.grace = std.duration(
                regsub(beresp.http.Cache-Control, "^.*stale-while-revalidate=([0-9]+).*$", "\1")
                + "s", 0s);
        } else {
            set beresp.grace = 1h;
        }
        # Kept past TTL and grace for a conditional fetch (ETag): a 304 refreshes it.
        set beresp.keep = 1d;
        unset beresp.http.Set-Cookie;
    }
    # No return here: Varnish's built-in rules follow and make no-store (every error) uncacheable.
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
