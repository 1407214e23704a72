// uWebSockets echo server for the bench matrix: every message goes back to
// its sender, compressed when permessage-deflate was negotiated.
// Built by bench/uws/build.sh; usage in common.h.
#include "common.h"

int main(int argc, char **argv) {
    bench::Args args = bench::parse(argc, argv);
    struct PerSocket {};
    uWS::App::WebSocketBehavior<PerSocket> behavior;
    bench::limits(behavior, args);
    behavior.message = [](auto *ws, std::string_view message, uWS::OpCode op) {
        ws->send(message, op, true);
    };
    uWS::App app;
    app.ws<PerSocket>("/*", std::move(behavior));
    bench::listen(app, args);
    app.run();
}
