import { once } from 'node:events';
import { createServer } from 'node:http';
import { metricsHandler } from '../../observability/metrics.ts';
import { type Command, intOption } from '../main.ts';

export const commands: Command[] = [
  {
    words: ['metrics'],
    usage: 'metrics [--port 9464] [--host H] [--group G ...] [--once]',
    summary: 'serve consumer-lag metrics of every group (or those named) for Prometheus until stopped',
    positionals: 0,
    options: {
      port: { type: 'string', short: 'p' },
      host: { type: 'string' },
      group: { type: 'string', short: 'g', multiple: true },
      once: { type: 'boolean' },
    },
    async run(ctx) {
      const bus = await ctx.bus();
      const named = ctx.values.group as string[] | undefined;
      bus.watchLag(named);
      if (ctx.values.once === true) {
        if (ctx.values.json === true) {
          for (const family of await bus.metrics.registry.getMetricsAsJSON()) ctx.out.record(family, '');
        } else process.stdout.write(await bus.metrics.text());
        return 0;
      }
      const port = intOption(ctx.values, 'port') ?? 9464;
      const host = (ctx.values.host as string | undefined) ?? '127.0.0.1';
      const serve = metricsHandler(bus);
      const server = createServer((req, res) => {
        if (req.method === 'GET' && (req.url === '/metrics' || req.url?.startsWith('/metrics?')))
          serve(req, res);
        else {
          res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
          res.end('not found: metrics are at /metrics\n');
        }
      });
      server.listen(port, host);
      await once(server, 'listening');
      const address = server.address();
      const url = `http://${host}:${typeof address === 'object' && address !== null ? address.port : port}/metrics`;
      ctx.out.record({ url, engine: bus.url }, `metrics on ${url} (engine ${bus.url}); Ctrl-C stops it`);
      try {
        if (!ctx.signal.aborted) await once(ctx.signal, 'abort');
      } finally {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
      return 0;
    },
  },
];
