<?php
/*
 * PHP's Stomp extension (PECL stomp; Debian: php-stomp) talking plain STOMP over TCP
 * to the gateway (stomp-gateway --tcp-port 61613), exactly as it talks to RabbitMQ's
 * rabbitmq_stomp plugin. This is the example from the PHP manual; only the URL and the
 * queue can be changed from the environment:
 *
 *   STOMP_URL=tcp://localhost:61613 STOMP_QUEUE=/queue/foo php examples/php/stomp_ext.php
 *
 * With no login, the extension sends a bare CONNECT: the gateway (like RabbitMQ) then
 * logs in as the default user (guest/guest, allowed from localhost only).
 */

$url = getenv('STOMP_URL') ?: 'tcp://localhost:61613';
$queue = getenv('STOMP_QUEUE') ?: '/queue/foo';
$msg = 'bar';

/* connection */
try {
    $stomp = new Stomp($url);
} catch (StompException $e) {
    fwrite(STDERR, 'Connection failed: ' . $e->getMessage() . "\n");
    exit(1);
}

/* send a message to the queue */
$stomp->send($queue, $msg);

/* subscribe to messages from the queue */
$stomp->subscribe($queue);

/* read a frame */
$frame = $stomp->readFrame();

if ($frame !== false && $frame->body === $msg) {
    var_dump($frame);
    /* acknowledge that the frame was received */
    $stomp->ack($frame);
} else {
    fwrite(STDERR, "unexpected frame\n");
    exit(1);
}

/* close connection */
unset($stomp);
