/**
 * A small stand-in for the compute servers REST API on 127.0.0.1 (node's http module), with
 * the real API's shapes and rules: servers in memory, actions that move a server into its
 * transitional state (tests finish them with `finish`), 400/409 errors with `field`.
 */
import { ServerConnection } from '@jupyterlab/services';
import * as http from 'http';
import { AddressInfo } from 'net';

import { ICloud, IServer, ServerAction, ServerState } from '../servers/types';

export const WARNING =
  "Deprovisioning deletes the server's machine and its disk. Everything on the server's disk that was not synced back to the Jupyter root is lost.";

export const LOCAL_CLOUD: ICloud = {
  name: 'local',
  label: 'This machine',
  description: 'A sandbox on the machine running Jupyter.',
  supports_suspend: false,
  config_fields: ['cpu', 'disk_gb', 'gpu', 'image', 'image_tag', 'memory_gb'],
  defaults: {
    image: 'python',
    image_tag: 'system',
    cpu: 2,
    memory_gb: 4.0,
    gpu: null,
    disk_gb: 10
  },
  available: true,
  reason: '',
  offerings: {
    images: [{ id: 'python', label: 'Python 3', tags: ['system'] }],
    cpu: { min: 1, max: 4 },
    memory_gb: { min: 0.25, max: 8 },
    gpus: [{ type: 'T4', max_count: 2 }],
    disk_gb: { min: 1, max: 100 }
  }
};

export const GCE_CLOUD: ICloud = {
  name: 'gce',
  label: 'Google Compute Engine',
  description: 'VMs on Google Cloud.',
  supports_suspend: true,
  config_fields: ['machine_type', 'disk_gb', 'gpu', 'zone'],
  defaults: {},
  available: false,
  reason: 'no credentials found; run gcloud auth application-default login',
  offerings: {}
};

const TRANSITIONS: Record<
  ServerAction,
  { from: ServerState[]; during: ServerState; to: ServerState }
> = {
  start: { from: ['deprovisioned', 'off'], during: 'starting', to: 'running' },
  stop: { from: ['running', 'suspended'], during: 'stopping', to: 'off' },
  suspend: { from: ['running'], during: 'suspending', to: 'suspended' },
  resume: { from: ['suspended'], during: 'starting', to: 'running' },
  reboot: { from: ['running'], during: 'running', to: 'running' },
  deprovision: {
    from: ['off', 'running', 'suspended', 'error'],
    during: 'deprovisioning',
    to: 'deprovisioned'
  }
};

export function allowedActions(state: ServerState): IServer['allowed_actions'] {
  const actions = (Object.keys(TRANSITIONS) as ServerAction[]).filter(
    action => action !== 'suspend' && TRANSITIONS[action].from.includes(state)
  ) as IServer['allowed_actions'];
  if (state === 'deprovisioned') {
    actions.push('delete');
  }
  return actions;
}

export function makeServer(overrides: Partial<IServer> = {}): IServer {
  const state = overrides.state ?? 'deprovisioned';
  return {
    id: 1,
    name: 'box',
    color: '#1f77b4',
    notes: '',
    cloud: 'local',
    state,
    state_reason: '',
    config: {
      image: 'python',
      image_tag: 'system',
      machine_type: null,
      cpu: 2,
      memory_gb: 4,
      gpu: null,
      disk_gb: 10,
      disk_type: null,
      spot: null,
      region: null,
      zone: null,
      extra: {}
    },
    idle_timeout_minutes: null,
    spend_limit: null,
    created: 1700000000,
    updated: 1700000000,
    operation: null,
    progress: null,
    allowed_actions: allowedActions(state),
    ...overrides
  };
}

interface IAnswer {
  status: number;
  body?: unknown;
}

export interface IRequestLog {
  method: string;
  path: string;
  body: any;
}

export class FakeApi {
  servers = new Map<number, IServer>();
  clouds: ICloud[] = [LOCAL_CLOUD, GCE_CLOUD];
  requests: IRequestLog[] = [];
  settings!: ServerConnection.ISettings;
  private _server!: http.Server;
  private _nextId = 1;

  async start(): Promise<void> {
    this._server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', chunk => chunks.push(chunk));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const path = (req.url ?? '').split('?')[0];
        const method = req.method ?? 'GET';
        let body: any = null;
        try {
          body = text ? JSON.parse(text) : null;
        } catch {
          body = text;
        }
        this.requests.push({ method, path, body });
        const answer = this.handle(method, path, body);
        res.writeHead(answer.status, { 'Content-Type': 'application/json' });
        res.end(answer.body === undefined ? '' : JSON.stringify(answer.body));
      });
    });
    await new Promise<void>(resolve =>
      this._server.listen(0, '127.0.0.1', resolve)
    );
    const port = (this._server.address() as AddressInfo).port;
    this.settings = ServerConnection.makeSettings({
      baseUrl: `http://127.0.0.1:${port}/`,
      wsUrl: `ws://127.0.0.1:${port}/`,
      token: 'secret',
      fetch: globalThis.fetch,
      Request: globalThis.Request,
      Headers: globalThis.Headers
    });
  }

  async stop(): Promise<void> {
    await new Promise<void>(resolve => this._server.close(() => resolve()));
  }

  reset(): void {
    this.servers.clear();
    this.requests = [];
    this.clouds = [LOCAL_CLOUD, GCE_CLOUD];
    this._nextId = 1;
  }

  /** Add a server directly, as another process (the CLI) would. */
  add(overrides: Partial<IServer> = {}): IServer {
    const server = makeServer({ id: this._nextId++, ...overrides });
    this.servers.set(server.id, server);
    return server;
  }

  /** Complete the operation under way on a server. */
  finish(id: number): IServer {
    const server = this.servers.get(id)!;
    const action = server.operation as ServerAction;
    const state = TRANSITIONS[action].to;
    const next = {
      ...server,
      state,
      state_reason: `${action} finished`,
      operation: null,
      progress: null,
      allowed_actions: allowedActions(state)
    };
    this.servers.set(id, next);
    return next;
  }

  private handle(method: string, path: string, body: any): IAnswer {
    const prefix = '/compute-servers/api/';
    if (!path.startsWith(prefix)) {
      return { status: 404 };
    }
    const parts = path.slice(prefix.length).split('/');
    if (parts[0] === 'clouds' && method === 'GET') {
      return {
        status: 200,
        body: { clouds: this.clouds, deprovision_warning: WARNING }
      };
    }
    if (parts[0] !== 'servers') {
      return { status: 404 };
    }
    if (parts.length === 1) {
      if (method === 'GET') {
        return { status: 200, body: { servers: [...this.servers.values()] } };
      }
      if (method === 'POST') {
        return this.create(body);
      }
    }
    const id = Number(parts[1]);
    const server = this.servers.get(id);
    if (!server) {
      return { status: 404, body: { message: `No compute server ${id}.` } };
    }
    if (parts.length === 2 && method === 'GET') {
      return { status: 200, body: server };
    }
    if (parts.length === 2 && method === 'PATCH') {
      const next = {
        ...server,
        ...body,
        config: { ...server.config, ...body.config }
      };
      this.servers.set(id, next);
      return { status: 200, body: next };
    }
    if (parts.length === 2 && method === 'DELETE') {
      if (server.state !== 'deprovisioned') {
        return {
          status: 409,
          body: {
            message: `Cannot delete: the server is ${server.state}. Deprovision it first.`,
            state: server.state,
            allowed_actions: server.allowed_actions
          }
        };
      }
      this.servers.delete(id);
      return { status: 204 };
    }
    if (parts[2] === 'history' && method === 'GET') {
      return {
        status: 200,
        body: {
          history: [
            {
              at: server.created,
              state: 'deprovisioned',
              reason: 'created',
              action: null
            }
          ]
        }
      };
    }
    if (parts[2] === 'actions' && method === 'POST') {
      return this.act(server, parts[3] as ServerAction, body ?? {});
    }
    return { status: 405, body: { message: 'Method not allowed' } };
  }

  private create(body: any): IAnswer {
    if (
      !body ||
      typeof body.name !== 'string' ||
      !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(body.name)
    ) {
      return {
        status: 400,
        body: {
          message: `name is not valid: ${JSON.stringify(body?.name)}. Use 1-63 letters, digits, '.', '_' or '-'.`,
          field: 'name'
        }
      };
    }
    if ([...this.servers.values()].some(s => s.name === body.name)) {
      return {
        status: 409,
        body: {
          message: `A compute server named ${body.name} exists already.`,
          field: 'name'
        }
      };
    }
    const cpu = body.config?.cpu;
    if (cpu !== undefined && (typeof cpu !== 'number' || cpu > 4)) {
      return {
        status: 400,
        body: {
          message: `config.cpu is ${cpu}, but this machine has 4 CPUs.`,
          field: 'config.cpu'
        }
      };
    }
    const server = this.add({
      name: body.name,
      cloud: body.cloud ?? 'local',
      color: body.color ?? '#1f77b4'
    });
    const config = { ...server.config, ...(body.config ?? {}) };
    const created = { ...server, config };
    this.servers.set(created.id, created);
    return { status: 201, body: created };
  }

  private act(server: IServer, action: ServerAction, body: any): IAnswer {
    const transition = TRANSITIONS[action];
    if (!transition) {
      return { status: 404, body: { message: `No action ${action}.` } };
    }
    if (action === 'deprovision' && body.confirm !== true) {
      return {
        status: 400,
        body: {
          message: `Deprovisioning needs "confirm": true. ${WARNING}`,
          field: 'confirm'
        }
      };
    }
    if (!server.allowed_actions.includes(action)) {
      return {
        status: 409,
        body: {
          message: `Cannot ${action}: the server is ${server.state}. Allowed now: ${server.allowed_actions.join(', ') || 'nothing'}.`,
          state: server.state,
          allowed_actions: server.allowed_actions
        }
      };
    }
    const next: IServer = {
      ...server,
      state: transition.during,
      state_reason: `${action} requested`,
      operation: action,
      progress: {
        message: `${action} requested`,
        fraction: null,
        at: 1700000001
      },
      allowed_actions: []
    };
    this.servers.set(server.id, next);
    return { status: 202, body: next };
  }
}
