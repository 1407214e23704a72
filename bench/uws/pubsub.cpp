// uWebSockets fan-out server, the semantics of tower-ws's
// examples/broadcast.rs: every connection subscribes to one topic, and a
// message from any client is published to it (so to every client, the
// sender included) with App::publish, uWebSockets' own broadcast path.
// Built by bench/uws/build.sh; usage in common.h.
#include "common.h"

static uWS::App *app;

int main(int argc, char **argv) {
    bench::Args args = bench::parse(argc, argv);
    struct PerSocket {};
    uWS::App::WebSocketBehavior<PerSocket> behavior;
    bench::limits(behavior, args);
    behavior.open = [](auto *ws) { ws->subscribe("all"); };
    behavior.message = [](auto *, std::string_view message, uWS::OpCode op) {
        app->publish("all", message, op, true);
    };
    uWS::App server;
    app = &server;
    server.ws<PerSocket>("/*", std::move(behavior));
    bench::listen(server, args);
    server.run();
}
