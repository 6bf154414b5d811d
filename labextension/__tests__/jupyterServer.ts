/**
 * A real `jupyter server` with the compute servers extension, for the tests that talk to the
 * REST API: one per test file (its own port, token, root, data dirs and kernel specs dir),
 * started in `beforeAll` and stopped in `afterAll`. `settings` are what the code under test
 * gets; they use Node's own fetch, through a wrapper that records what the code under test sent
 * (`requests`). The helpers (`create`, `act`, `get`, `cleanup`, ...) talk to the server
 * directly, as another client (the CLI, another browser tab) would, and are not recorded.
 */
import { ServerConnection } from '@jupyterlab/services';
import { ChildProcess, spawn } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

import { ICloud, IServer, ServerAction, ServerState } from '../servers/types';

/** The real server's deprovision warning. */
export const WARNING =
  "Deprovisioning deletes the server's machine and its disk. Everything on the server's disk that was not synced back to the Jupyter root is lost. The configuration is kept, so the server can be started again from a fresh disk.";

export interface IRequestLog {
  method: string;
  path: string;
  body: any;
}

const REPO_ROOT = path.join(__dirname, '..', '..');

function jupyterExecutable(): string {
  const inVenv = path.join(REPO_ROOT, '.venv', 'bin', 'jupyter');
  return fs.existsSync(inVenv) ? inVenv : 'jupyter';
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const port = (probe.address() as net.AddressInfo).port;
      probe.close(() => resolve(port));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms));
}

/** States in which no operation is under way. */
const SETTLED: ServerState[] = ['deprovisioned', 'off', 'running', 'error'];

export class JupyterServer {
  /**
   * @param options.dataDir the compute servers' data dir (store, keys, sandboxes), to start
   *   a second Jupyter server on another one's servers; default a fresh one
   * @param options.clouds the enabled clouds (default: the extension's default, local)
   * @param options.home a HOME of its own (its ~/.ssh: no known_hosts, no keys, no agent)
   * @param options.allowOrigin an Origin its websockets accept besides its own, e.g. the
   *   test page's (`http://localhost`), for jsdom's WebSocket
   * @param options.config more configuration, as jupyter_server_config.json holds it (e.g.
   *   `{ComputeServerCosts: {price_tables: {...}}}`)
   * @param options.env more environment variables of the server (e.g. a PYTHONPATH)
   */
  constructor(
    private readonly options: {
      dataDir?: string;
      clouds?: string[];
      home?: boolean;
      allowOrigin?: string;
      config?: Record<string, unknown>;
      env?: Record<string, string>;
    } = {}
  ) {}

  settings!: ServerConnection.ISettings;
  /** What the code under test sent through `settings` since the last `cleanup`. */
  requests: IRequestLog[] = [];
  private _process: ChildProcess | null = null;
  private _dir = '';
  private _dataDir = '';
  private _baseUrl = '';
  private _token = '';
  private _log = '';

  async start(): Promise<void> {
    this._dir = fs.mkdtempSync(path.join(os.tmpdir(), 'jcs-jest-'));
    const root = path.join(this._dir, 'root');
    const data = this.options.dataDir ?? path.join(this._dir, 'data');
    this._dataDir = data;
    fs.mkdirSync(root);
    fs.mkdirSync(data, { recursive: true });
    const port = await freePort();
    this._token = crypto.randomBytes(16).toString('hex');
    const extraArgs = (this.options.clouds ?? []).map(
      cloud => `--ComputeServersApp.enabled_clouds=${cloud}`
    );
    if (this.options.allowOrigin) {
      extraArgs.push(`--ServerApp.allow_origin=${this.options.allowOrigin}`);
    }
    if (this.options.config) {
      const configDir = path.join(this._dir, 'config');
      fs.mkdirSync(configDir, { recursive: true });
      fs.writeFileSync(
        path.join(configDir, 'jupyter_server_config.json'),
        JSON.stringify(this.options.config)
      );
    }
    const extraEnv: Record<string, string> = { ...(this.options.env ?? {}) };
    if (this.options.home) {
      const home = path.join(this._dir, 'home');
      fs.mkdirSync(path.join(home, '.ssh'), { recursive: true, mode: 0o700 });
      extraEnv.HOME = home;
    }
    const env: NodeJS.ProcessEnv = { ...process.env };
    if (this.options.home) {
      delete env.SSH_AUTH_SOCK; // no agent: only the keys a host names
    }
    this._baseUrl = `http://127.0.0.1:${port}/`;
    this._process = spawn(
      jupyterExecutable(),
      [
        'server',
        '--no-browser',
        '--allow-root',
        '--ip=127.0.0.1',
        `--port=${port}`,
        '--ServerApp.port_retries=0',
        `--IdentityProvider.token=${this._token}`,
        `--ServerApp.root_dir=${root}`,
        `--ComputeServersApp.data_dir=${data}`,
        // The compute servers' kernel specs, which would otherwise go to the user's Jupyter
        // data dir (~/.local/share/jupyter/kernels).
        `--ComputeServersApp.kernel_specs_dir=${path.join(data, 'kernels')}`,
        '--ServerApp.jpserver_extensions=jupyter_compute_servers=True',
        ...extraArgs
      ],
      {
        cwd: this._dir,
        env: {
          ...env,
          JUPYTER_CONFIG_DIR: path.join(this._dir, 'config'),
          // Its own data dir: no kernel specs from the user's (stale compute-* ones included).
          JUPYTER_DATA_DIR: path.join(this._dir, 'jupyter-data'),
          JUPYTER_RUNTIME_DIR: path.join(this._dir, 'runtime'),
          ...extraEnv
        },
        stdio: ['ignore', 'pipe', 'pipe']
      }
    );
    const keep = (chunk: Buffer) => {
      this._log = (this._log + chunk.toString('utf8')).slice(-20000);
    };
    this._process.stdout!.on('data', keep);
    this._process.stderr!.on('data', keep);

    const recording = async (
      input: RequestInfo | URL,
      init?: RequestInit
    ): Promise<Response> => {
      const request = new Request(input, init);
      const text = await request.clone().text();
      let body: any = null;
      try {
        body = text ? JSON.parse(text) : null;
      } catch {
        body = text;
      }
      this.requests.push({
        method: request.method,
        path: new URL(request.url).pathname,
        body
      });
      return globalThis.fetch(request);
    };
    this.settings = ServerConnection.makeSettings({
      baseUrl: this._baseUrl,
      wsUrl: `ws://127.0.0.1:${port}/`,
      token: this._token,
      fetch: recording as typeof fetch,
      Request: globalThis.Request,
      Headers: globalThis.Headers
    });

    const end = Date.now() + 60000;
    for (;;) {
      if (this._process.exitCode !== null) {
        throw new Error(`jupyter server exited:\n${this._log}`);
      }
      try {
        const response = await this._fetch('GET', 'status');
        if (response.ok) {
          break;
        }
      } catch {
        // Not listening yet.
      }
      if (Date.now() > end) {
        await this.stop();
        throw new Error(`jupyter server did not answer:\n${this._log}`);
      }
      await sleep(100);
    }
  }

  /** The compute servers' data dir (for a second server on the same servers). */
  get dataDir(): string {
    return this._dataDir;
  }

  /** The Jupyter root (what file sync syncs with a server's workspace). */
  get rootDir(): string {
    return path.join(this._dir, 'root');
  }

  /** A local server's workspace (its disk), where sync writes on the server's side. */
  workspace(serverId: number): string {
    return path.join(this._dataDir, 'local', String(serverId), 'disk');
  }

  /** Stop every sandbox, then the server (SIGTERM, then wait), and remove its files. */
  async stop(): Promise<void> {
    const child = this._process;
    if (child && child.exitCode === null && child.signalCode === null) {
      try {
        await this.cleanup();
      } catch {
        // Stopping the server below still stops what it can.
      }
      const exited = new Promise<void>(resolve => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
      await exited;
      clearTimeout(timer);
    }
    this._process = null;
    this.removeFiles();
  }

  /**
   * Kill the server (SIGKILL), as a crash would: its compute servers and their kernels keep
   * running, and its files stay for another Jupyter server (`removeFiles` afterwards).
   */
  async kill(): Promise<void> {
    const child = this._process;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>(resolve => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
    this._process = null;
  }

  removeFiles(): void {
    if (this._dir) {
      fs.rmSync(this._dir, { recursive: true, force: true });
    }
  }

  private _fetch(method: string, endPoint: string, body?: unknown) {
    return this._fetchUrl(method, `compute-servers/api/${endPoint}`, body);
  }

  private _fetchUrl(method: string, urlPath: string, body?: unknown) {
    return globalThis.fetch(`${this._baseUrl}${urlPath}`, {
      method,
      headers: {
        Authorization: `token ${this._token}`,
        'Content-Type': 'application/json'
      },
      body: body === undefined ? undefined : JSON.stringify(body)
    });
  }

  /** Call the API directly (not recorded); throw on an unexpected status. */
  async call<T = any>(
    method: string,
    endPoint: string,
    body?: unknown,
    expected?: number
  ): Promise<{ status: number; body: T }> {
    const response = await this._fetch(method, endPoint, body);
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (expected !== undefined && response.status !== expected) {
      throw new Error(
        `${method} ${endPoint}: ${response.status} ${text} (wanted ${expected})`
      );
    }
    return { status: response.status, body: data };
  }

  /** Call Jupyter Server's own REST API (`api/...`) directly; throw on an unexpected status. */
  async jupyter<T = any>(
    method: string,
    urlPath: string,
    body?: unknown,
    expected?: number
  ): Promise<T> {
    const response = await this._fetchUrl(method, urlPath, body);
    const text = await response.text();
    if (expected !== undefined && response.status !== expected) {
      throw new Error(
        `${method} ${urlPath}: ${response.status} ${text} (wanted ${expected})`
      );
    }
    return text ? JSON.parse(text) : null;
  }

  /** Start a kernel through Jupyter's kernels API (a compute server kernel runs there). */
  async startKernel(name: string): Promise<{ id: string; name: string }> {
    return this.jupyter('POST', 'api/kernels', { name }, 201);
  }

  async clouds(): Promise<ICloud[]> {
    return (await this.call('GET', 'clouds', undefined, 200)).body.clouds;
  }

  async list(): Promise<IServer[]> {
    return (await this.call('GET', 'servers', undefined, 200)).body.servers;
  }

  async get(id: number): Promise<IServer> {
    return (await this.call('GET', `servers/${id}`, undefined, 200)).body;
  }

  /** Run an action and wait until its operation is over. */
  async act(id: number, action: ServerAction): Promise<IServer> {
    const body = action === 'deprovision' ? { confirm: true } : {};
    await this.call('POST', `servers/${id}/actions/${action}`, body, 202);
    return this.settle(id);
  }

  /** Wait until no operation is under way on a server. */
  async settle(id: number, timeout = 20000): Promise<IServer> {
    const end = Date.now() + timeout;
    for (;;) {
      const server = await this.get(id);
      if (server.operation === null && SETTLED.includes(server.state)) {
        return server;
      }
      if (Date.now() > end) {
        throw new Error(`server ${id} did not settle: ${server.state}`);
      }
      await sleep(50);
    }
  }

  /** Create a server (as another client would) and bring it into `state`. */
  async create(
    name: string,
    state: 'deprovisioned' | 'off' | 'running' = 'deprovisioned'
  ): Promise<IServer> {
    let server: IServer = (
      await this.call('POST', 'servers', { name, cloud: 'local' }, 201)
    ).body;
    if (state !== 'deprovisioned') {
      server = await this.act(server.id, 'start');
    }
    if (state === 'off') {
      server = await this.act(server.id, 'stop');
    }
    if (server.state !== state) {
      throw new Error(`server ${name} is ${server.state}, not ${state}`);
    }
    return server;
  }

  /**
   * Shut down every kernel, deprovision and delete every server (so that no sandbox SSH
   * server is left running), and forget the recorded requests: the next test starts from an
   * empty list.
   */
  async cleanup(): Promise<void> {
    for (const kernel of await this.jupyter('GET', 'api/kernels')) {
      await this.jupyter('DELETE', `api/kernels/${kernel.id}`);
    }
    for (const { id } of await this.list()) {
      let server = await this.settle(id);
      if (server.state !== 'deprovisioned') {
        server = await this.act(id, 'deprovision');
      }
      await this.call('DELETE', `servers/${id}`, undefined, 204);
    }
    const hosts = await this.call('GET', 'hosts');
    for (const { id } of hosts.status === 200 ? hosts.body.hosts : []) {
      await this.call('DELETE', `hosts/${id}`, undefined, 204);
    }
    this.requests = [];
  }
}
