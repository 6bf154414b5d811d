/**
 * requestAPI against a real HTTP server on 127.0.0.1 (node's http module), through
 * ServerConnection settings that use Node's own fetch.
 */
import { ServerConnection } from '@jupyterlab/services';
import * as http from 'http';
import { AddressInfo } from 'net';

import { API_NAMESPACE, ApiError, requestAPI } from '../request';

interface IRecorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** What the test server answers for a path (without the query string). */
type Route = (req: IRecorded) => {
  status: number;
  body?: string;
  contentType?: string;
};

describe('requestAPI', () => {
  let server: http.Server;
  let settings: ServerConnection.ISettings;
  let recorded: IRecorded[];
  let routes: Record<string, Route>;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', chunk => chunks.push(chunk));
      req.on('end', () => {
        const entry: IRecorded = {
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8')
        };
        recorded.push(entry);
        const path = entry.url.split('?')[0];
        const route = routes[path];
        // No route: what Jupyter Server answers when the extension is not loaded.
        const answer = route
          ? route(entry)
          : {
              status: 404,
              body: '<html>404: Not Found</html>',
              contentType: 'text/html'
            };
        res.writeHead(answer.status, {
          'Content-Type': answer.contentType ?? 'application/json'
        });
        res.end(answer.body ?? '');
      });
    });
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    settings = ServerConnection.makeSettings({
      baseUrl: `http://127.0.0.1:${port}/base/`,
      wsUrl: `ws://127.0.0.1:${port}/base/`,
      token: 'secret-token',
      fetch: globalThis.fetch,
      Request: globalThis.Request,
      Headers: globalThis.Headers
    });
  });

  afterAll(async () => {
    await new Promise<void>(resolve => server.close(() => resolve()));
  });

  beforeEach(() => {
    recorded = [];
    routes = {};
  });

  it('calls the API under the base URL and decodes the JSON answer', async () => {
    routes[`/base/${API_NAMESPACE}/status`] = () => ({
      status: 200,
      body: JSON.stringify({ version: '1.2.3', clouds: ['local'] })
    });

    const data = await requestAPI<{ version: string; clouds: string[] }>(
      'status',
      {},
      settings
    );

    expect(data).toEqual({ version: '1.2.3', clouds: ['local'] });
    expect(recorded).toHaveLength(1);
    expect(recorded[0].method).toBe('GET');
    expect(recorded[0].url.split('?')[0]).toBe(
      '/base/compute-servers/api/status'
    );
    expect(recorded[0].headers['authorization']).toBe('token secret-token');
  });

  it('sends a body object as JSON', async () => {
    routes[`/base/${API_NAMESPACE}/servers`] = req => ({
      status: 201,
      body: JSON.stringify({ received: JSON.parse(req.body) })
    });
    const payload = { name: 'gpu-box', cloud: 'local', tags: ['a', 'b'] };

    const data = await requestAPI<{ received: unknown }>(
      'servers',
      { method: 'POST', body: payload },
      settings
    );

    expect(recorded[0].method).toBe('POST');
    expect(recorded[0].headers['content-type']).toBe('application/json');
    expect(JSON.parse(recorded[0].body)).toEqual(payload);
    expect(data).toEqual({ received: payload });
  });

  it('answers null for an empty 204', async () => {
    routes[`/base/${API_NAMESPACE}/servers/1`] = () => ({ status: 204 });

    const data = await requestAPI('servers/1', { method: 'DELETE' }, settings);

    expect(recorded[0].method).toBe('DELETE');
    expect(data).toBeNull();
  });

  it('throws ApiError with the message and field of a JSON error body', async () => {
    routes[`/base/${API_NAMESPACE}/servers`] = () => ({
      status: 400,
      body: JSON.stringify({
        message: 'Name must not be empty.',
        field: 'name',
        reason: 'invalid'
      })
    });

    const error = await requestAPI(
      'servers',
      { method: 'POST', body: { name: '' } },
      settings
    ).then(
      () => null,
      (reason: unknown) => reason
    );

    expect(error).toBeInstanceOf(ApiError);
    const apiError = error as ApiError;
    expect(apiError.status).toBe(400);
    expect(apiError.message).toBe('Name must not be empty.');
    expect(apiError.field).toBe('name');
    expect(apiError.body).toEqual({
      message: 'Name must not be empty.',
      field: 'name',
      reason: 'invalid'
    });
    expect(apiError.isMissingExtension).toBe(false);
  });

  it('treats a JSON 404 from the extension as an ordinary error', async () => {
    routes[`/base/${API_NAMESPACE}/servers/42`] = () => ({
      status: 404,
      body: JSON.stringify({ message: 'No compute server 42.' })
    });

    await expect(requestAPI('servers/42', {}, settings)).rejects.toMatchObject({
      status: 404,
      message: 'No compute server 42.',
      field: null,
      isMissingExtension: false
    });
  });

  it('counts a bare 404 as the server extension missing', async () => {
    const error = await requestAPI('status', {}, settings).then(
      () => null,
      (reason: unknown) => reason
    );

    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).status).toBe(404);
    expect((error as ApiError).isMissingExtension).toBe(true);
    expect((error as ApiError).message).toBeTruthy();
  });

  it('falls back to the status text for a non-JSON error', async () => {
    routes[`/base/${API_NAMESPACE}/status`] = () => ({
      status: 500,
      body: 'Traceback (most recent call last): ...',
      contentType: 'text/plain'
    });

    await expect(requestAPI('status', {}, settings)).rejects.toMatchObject({
      name: 'ApiError',
      status: 500,
      message: 'Internal Server Error',
      field: null,
      isMissingExtension: false
    });
  });

  it('throws a NetworkError when nothing listens', async () => {
    const closed = http.createServer();
    await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>(resolve => closed.close(() => resolve()));
    const deadSettings = ServerConnection.makeSettings({
      ...settings,
      baseUrl: `http://127.0.0.1:${port}/`,
      wsUrl: `ws://127.0.0.1:${port}/`
    });

    await expect(requestAPI('status', {}, deadSettings)).rejects.toBeInstanceOf(
      ServerConnection.NetworkError
    );
  });
});
