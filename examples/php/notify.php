<?php
/**
 * Push JSON from a PHP backend to browsers connected through stomp-gateway.
 *
 * The browser subscribes (with @stomp/stompjs, through the gateway) to
 *
 *     /exchange/stomp_exchange/user.<id>     its own notifications
 *     /exchange/stomp_exchange/broadcast     everyone's
 *
 * and this file publishes to the durable topic exchange `stomp_exchange` with the
 * routing key `user.<id>` or `broadcast`: a JSON body, content_type application/json,
 * delivery_mode 2 (persistent). Plain AMQP with php-amqplib, exactly what a backend did
 * for rabbitmq_web_stomp; nothing changes when the browser talks to the gateway.
 *
 * Library use:
 *
 *     require 'examples/php/notify.php';
 *     $n = new StompNotifier();                   // AMQP_URL, STOMP_EXCHANGE from env
 *     $n->sendToUser(42, ['title' => 'Order shipped', 'text' => '#1234']);
 *     $n->broadcast(['text' => 'Maintenance at 18:00']);
 *     $n->close();
 *
 *     send_to_user(42, [...]);                    // one-shot: connect, publish, close
 *     broadcast([...]);
 *
 * Command line:
 *
 *     php examples/php/notify.php user 42 '{"text":"hi"}'
 *     php examples/php/notify.php broadcast '{"text":"all"}'
 *
 * Environment: AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/), STOMP_EXCHANGE
 * (default stomp_exchange).
 *
 * php-amqplib: Debian's package (apt-get install php-cli php-amqplib) installs the
 * autoloader /usr/share/php/PhpAmqpLib/autoload.php; with Composer
 * (composer require php-amqplib/php-amqplib) vendor/autoload.php is used instead.
 *
 * Do not set the AMQP `user_id` property to the browser user's id (as some tutorials
 * do): RabbitMQ checks it against the AMQP login and closes the channel
 * (PRECONDITION_FAILED) when they differ. The routing key names the recipient.
 */

declare(strict_types=1);

foreach ([__DIR__ . '/vendor/autoload.php', '/usr/share/php/PhpAmqpLib/autoload.php'] as $autoload) {
    if (is_file($autoload)) {
        require_once $autoload;
        break;
    }
}
if (!class_exists(\PhpAmqpLib\Connection\AMQPStreamConnection::class)) {
    fwrite(STDERR, "php-amqplib not found: apt-get install php-amqplib, or composer require php-amqplib/php-amqplib\n");
    exit(1);
}

use PhpAmqpLib\Channel\AMQPChannel;
use PhpAmqpLib\Connection\AMQPStreamConnection;
use PhpAmqpLib\Message\AMQPMessage;

final class StompNotifier
{
    public const APP_ID = 'examples/php/notify.php';

    private AMQPStreamConnection $connection;
    private AMQPChannel $channel;
    private bool $returned = false;

    public function __construct(?string $url = null, private ?string $exchange = null)
    {
        $url ??= getenv('AMQP_URL') ?: 'amqp://guest:guest@127.0.0.1:5672/';
        $this->exchange ??= getenv('STOMP_EXCHANGE') ?: 'stomp_exchange';
        [$host, $port, $user, $pass, $vhost] = self::parseUrl($url);

        $this->connection = new AMQPStreamConnection($host, $port, $user, $pass, $vhost);
        $this->channel = $this->connection->channel();
        // The same declaration the Python example makes: durable topic exchange
        // (passive=false, durable=true, auto_delete=false). Browsers cannot subscribe
        // to /exchange/stomp_exchange/... until it exists.
        $this->channel->exchange_declare($this->exchange, 'topic', false, true, false);
        // Publisher confirms + mandatory: publish() returns once the broker has the
        // message and knows whether any queue (any subscribed browser) received it.
        $this->channel->confirm_select();
        $this->channel->set_return_listener(function (): void {
            $this->returned = true;
        });
    }

    /** amqp://user:pass@host:port/vhost -> [host, port, user, pass, vhost] */
    private static function parseUrl(string $url): array
    {
        $parts = parse_url($url);
        if ($parts === false || !in_array($parts['scheme'] ?? '', ['amqp'], true)) {
            throw new InvalidArgumentException("not an amqp:// URL: $url");
        }
        $path = $parts['path'] ?? '';
        $vhost = ($path === '' || $path === '/') ? '/' : rawurldecode(substr($path, 1));
        return [
            $parts['host'] ?? '127.0.0.1',
            (int)($parts['port'] ?? 5672),
            rawurldecode($parts['user'] ?? 'guest'),
            rawurldecode($parts['pass'] ?? 'guest'),
            $vhost,
        ];
    }

    /** Publish $payload as JSON; true if routed to at least one queue. */
    public function publish(string $routingKey, mixed $payload): bool
    {
        $body = json_encode($payload, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
        $message = new AMQPMessage($body, [
            'content_type' => 'application/json',
            'delivery_mode' => AMQPMessage::DELIVERY_MODE_PERSISTENT,
            'app_id' => self::APP_ID,
        ]);
        $this->returned = false;
        $this->channel->basic_publish($message, $this->exchange, $routingKey, true);
        $this->channel->wait_for_pending_acks_returns(10.0);
        return !$this->returned;
    }

    /** To every browser tab of one user (routing key user.<id>). */
    public function sendToUser(int|string $userId, mixed $payload): bool
    {
        return $this->publish("user.$userId", $payload);
    }

    /** To every connected user (routing key broadcast). */
    public function broadcast(mixed $payload): bool
    {
        return $this->publish('broadcast', $payload);
    }

    public function exchange(): string
    {
        return $this->exchange;
    }

    public function close(): void
    {
        $this->channel->close();
        $this->connection->close();
    }
}

function send_to_user(int|string $userId, mixed $payload): bool
{
    $notifier = new StompNotifier();
    try {
        return $notifier->sendToUser($userId, $payload);
    } finally {
        $notifier->close();
    }
}

function broadcast(mixed $payload): bool
{
    $notifier = new StompNotifier();
    try {
        return $notifier->broadcast($payload);
    } finally {
        $notifier->close();
    }
}

function notify_main(array $argv): int
{
    $usage = "usage: php notify.php user <id> '<json>' | php notify.php broadcast '<json>'\n";
    $command = $argv[1] ?? '';
    if ($command === 'user' && count($argv) === 4) {
        [$target, $json] = ["user.{$argv[2]}", $argv[3]];
    } elseif ($command === 'broadcast' && count($argv) === 3) {
        [$target, $json] = ['broadcast', $argv[2]];
    } else {
        fwrite(STDERR, $usage);
        return 2;
    }
    try {
        // Objects stay objects (stdClass), so {} round-trips as {} and not [].
        $payload = json_decode($json, false, 512, JSON_THROW_ON_ERROR);
    } catch (JsonException $e) {
        fwrite(STDERR, "payload is not JSON: {$e->getMessage()}\n$usage");
        return 2;
    }
    $notifier = new StompNotifier();
    try {
        $routed = $notifier->publish($target, $payload);
        $where = "{$notifier->exchange()}/$target";
    } finally {
        $notifier->close();
    }
    echo $routed ? "sent to $where (routed)\n" : "sent to $where (unroutable: no subscriber, dropped)\n";
    return 0;
}

// Run as a script, not when required as a library.
if (PHP_SAPI === 'cli' && realpath($_SERVER['SCRIPT_FILENAME'] ?? '') === __FILE__) {
    exit(notify_main($argv));
}
