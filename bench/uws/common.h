// Shared by our uWebSockets servers (echo.cpp, pubsub.cpp): the command line
// every server of the bench takes, and the line the harness waits for.
//
//   SERVER HOST:PORT [--compression none|shared|dedicated]
//
// --compression picks uWebSockets' permessage-deflate mode: none (default),
// shared (SHARED_COMPRESSOR: one deflate stream per event loop, reset for
// every message, so no context takeover) or dedicated (DEDICATED_COMPRESSOR:
// a 256 KiB deflate stream per connection, with context takeover). Both
// decompress with the loop's shared inflater (the client offers
// client_no_context_takeover).
#pragma once

#include "App.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace bench {

struct Args {
    std::string host = "127.0.0.1";
    int port = 9001;
    uWS::CompressOptions compression = uWS::DISABLED;
};

[[noreturn]] inline void usage(const char *why) {
    std::fprintf(stderr, "%s\nusage: SERVER HOST:PORT [--compression none|shared|dedicated]\n", why);
    std::exit(2);
}

inline Args parse(int argc, char **argv) {
    Args a;
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        if (arg == "--compression") {
            if (++i == argc) usage("--compression needs a value");
            std::string v = argv[i];
            if (v == "none") a.compression = uWS::DISABLED;
            else if (v == "shared") a.compression = uWS::SHARED_COMPRESSOR;
            else if (v == "dedicated") a.compression = uWS::DEDICATED_COMPRESSOR;
            else usage("--compression is none, shared or dedicated");
        } else if (arg.rfind("--", 0) == 0) {
            usage(("unknown option " + arg).c_str());
        } else {
            size_t colon = arg.rfind(':');
            if (colon == std::string::npos) usage("the address is HOST:PORT");
            a.host = arg.substr(0, colon);
            a.port = std::atoi(arg.c_str() + colon + 1);
        }
    }
    return a;
}

// Limits as in every server of the matrix: 64 MiB messages, no idle timeout
// or automatic pings (the idle-memory test holds connections for minutes),
// and room for a 16 KiB message to every subscriber many times over before
// uWebSockets drops anything.
template <typename Behavior>
inline void limits(Behavior &b, const Args &a) {
    b.compression = a.compression;
    b.maxPayloadLength = 64 * 1024 * 1024;
    b.idleTimeout = 0;
    b.sendPingsAutomatically = false;
    b.maxBackpressure = 64 * 1024 * 1024;
    b.closeOnBackpressureLimit = false;
}

template <typename App>
inline void listen(App &app, const Args &a) {
    app.listen(a.host, a.port, [&a](auto *socket) {
        if (!socket) {
            std::fprintf(stderr, "cannot listen on %s:%d\n", a.host.c_str(), a.port);
            std::exit(1);
        }
        // The harness waits for this first line.
        std::printf("listening on ws://%s:%d\n", a.host.c_str(), a.port);
        std::fflush(stdout);
    });
}

}  // namespace bench
