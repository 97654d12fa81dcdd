<?php
// A PHP daemon on ext/sockets (as PHP ships it: a shared extension PHP loads with
// RTLD_DEEPBIND): no SO_REUSEADDR, answers HTTP/1.0 and closes first, until killed.
$port = (int)getenv('PORT');
$s = socket_create(AF_INET, SOCK_STREAM, SOL_TCP);
if (!@socket_bind($s, '127.0.0.1', $port)) {
    fwrite(STDERR, "bind: " . socket_strerror(socket_last_error($s)) . "\n");
    exit(98);
}
socket_listen($s, 64);
while (true) {
    $c = socket_accept($s);
    if ($c === false) continue;
    socket_read($c, 1024);
    socket_write($c, "HTTP/1.0 200 OK\r\n\r\nok php pid=" . getmypid() . "\n");
    socket_close($c);
}
