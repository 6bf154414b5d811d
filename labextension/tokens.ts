import { Token } from '@lumino/coreutils';
import { IDisposable } from '@lumino/disposable';
import { ISignal } from '@lumino/signaling';
import { ReactNode } from 'react';

import {
  ICloud,
  IHistoryEntry,
  IServer,
  IServerCreate,
  IServerUpdate,
  ITeam,
  ServerAction
} from './servers/types';
import {
  IEstimate,
  IEstimateRequest,
  IImageCatalog,
  IImageTested
} from './create/types';
import { IRemoteKernel } from './kernels/types';
import { IHost, IHostFields, IHostUpdate } from './hosts/types';
import { IServerMetrics } from './metrics/types';
import { IRemoteTerminal, ITerminalCreate } from './terminals/types';
import { ISyncEventData, ISyncRequest, ISyncRun } from './sync/types';
import { ICosts } from './costs/types';
import { IServerEvent } from './events/types';

export * from './servers/types';
export * from './kernels/types';
export * from './terminals/types';
export * from './hosts/types';
export * from './metrics/types';
export * from './create/types';
export * from './sync/types';
export * from './costs/types';
export * from './events/types';

/**
 * The server extension's events, parsed once from Jupyter Server's event stream: what every
 * model that follows the servers listens to.
 */
export interface IServerEvents {
  /** Emitted with each event of the server extension's schema. */
  readonly stream: ISignal<IServerEvents, IServerEvent>;
}

export const IServerEvents = new Token<IServerEvents>(
  'jupyter-compute-servers:IServerEvents',
  "The compute servers extension's events, parsed."
);

/**
 * Something read per running compute server (its kernels, terminals or metrics) and shown in
 * the sidebar under the server: read only while something shows it (`watched`).
 */
export interface IServerDetailsModel {
  /** Whether anything shows it now; live updates read only meanwhile. */
  watched: boolean;
  readonly watchedChanged: ISignal<any, boolean>;
  /** Read a server's entry again. Never rejects: a failure is kept in the entry. */
  refresh(serverId: number): Promise<void>;
  /** Forget a server's entry (it stopped, or was deleted). */
  forget(serverId: number): void;
}

/** One server's entry: the value read last, or why reading it failed. */
export interface IServerEntry<T> {
  /** The value read last (`empty` before the first answer). */
  readonly value: T;
  /** Whether an answer has come. */
  readonly loaded: boolean;
  /** The error of the last failed read, or null. */
  readonly error: string | null;
  /** When the value was read, in ms since the epoch (0 before). */
  readonly at: number;
}

/** What `GET compute-servers/api/status` answers. */
export interface IExtensionStatus {
  version: string;
  clouds: string[];
}

/**
 * How the frontend stands with the server extension:
 * - `loading`: the first answer has not come yet;
 * - `ok`: the server extension answered with the frontend's version;
 * - `version-mismatch`: it answered with another version (a stale install);
 * - `missing`: it is not installed or not enabled (the API answers 404);
 * - `unreachable`: the Jupyter server could not be reached or failed.
 */
export type ConnectionState =
  'loading' | 'ok' | 'version-mismatch' | 'missing' | 'unreachable';

export interface IStatusSnapshot {
  state: ConnectionState;
  frontendVersion: string;
  status: IExtensionStatus | null;
  error: string | null;
}

/** The shared view of the server extension's status, for plugins that need it. */
export interface IComputeServersStatus {
  readonly snapshot: IStatusSnapshot;
  readonly changed: ISignal<IComputeServersStatus, IStatusSnapshot>;
  refresh(): Promise<void>;
}

export const IComputeServersStatus = new Token<IComputeServersStatus>(
  'jupyter-compute-servers:IComputeServersStatus',
  'The compute servers server extension: version and availability.'
);

/**
 * The compute servers and the clouds they run on, kept up to date with the server: the
 * sidebar, the commands and other plugins share one.
 */
export interface IComputeServersModel {
  /** The servers, by id; empty until the first refresh. */
  readonly servers: ReadonlyArray<IServer>;
  /** The enabled clouds (fetched once, and again by `refreshClouds`). */
  readonly clouds: ReadonlyArray<ICloud>;
  /** Said before a deprovision: what will be lost. */
  readonly deprovisionWarning: string;
  /** The error of the last failed refresh, or null. */
  readonly error: string | null;
  /** Whether the first list has arrived. */
  readonly loaded: boolean;
  /** Emitted whenever servers, clouds or error change. */
  readonly changed: ISignal<IComputeServersModel, void>;

  server(id: number): IServer | undefined;
  refresh(): Promise<void>;
  refreshClouds(): Promise<void>;
  create(body: IServerCreate): Promise<IServer>;
  update(id: number, body: IServerUpdate): Promise<IServer>;
  remove(id: number): Promise<void>;
  act(
    id: number,
    action: ServerAction,
    body?: Record<string, unknown>
  ): Promise<IServer>;
  history(id: number): Promise<IHistoryEntry[]>;
  /** The image catalogue: tested versions, or every version with `includeUntested`. */
  images(includeUntested?: boolean): Promise<IImageCatalog>;
  /** Mark a version of the catalogue tested (admins; `tested: false` takes it back). */
  markImageTested(
    image: string,
    tag: string,
    tested?: boolean
  ): Promise<IImageTested>;
  /** What a configuration (a new server's, or an edit of one) would cost. */
  estimate(body: IEstimateRequest): Promise<IEstimate>;
  /** Who is asking and the owner's quota (team mode on JupyterHub). */
  team(): Promise<ITeam>;
}

export const IComputeServersModel = new Token<IComputeServersModel>(
  'jupyter-compute-servers:IComputeServersModel',
  'The compute servers and clouds, with create, edit, delete and lifecycle actions.'
);

/**
 * The kernels running on the compute servers (orphans included), read on demand: the sidebar
 * lists them under each running server and shuts them down.
 */
export interface IServerKernelsModel extends IServerDetailsModel {
  /** Emitted with a server's id whenever its kernels (or their error) change. */
  readonly changed: ISignal<IServerKernelsModel, number>;
  /** A server's running kernels as last read: orphans first, then oldest first. */
  entry(serverId: number): IServerEntry<ReadonlyArray<IRemoteKernel>>;
  /** Shut a kernel down (its sessions end too). */
  shutdown(serverId: number, kernelId: string): Promise<void>;
}

export const IServerKernelsModel = new Token<IServerKernelsModel>(
  'jupyter-compute-servers:IServerKernelsModel',
  'The kernels running on each compute server, with shut down.'
);

/**
 * The terminals of the compute servers, read on demand: the sidebar lists them under each
 * running server, and the terminal commands start and end them.
 */
export interface IServerTerminalsModel extends IServerDetailsModel {
  /** Emitted with a server's id whenever its terminals (or their error) change. */
  readonly changed: ISignal<IServerTerminalsModel, number>;
  /** A server's terminals as last read (by name; empty before the first answer). */
  entry(serverId: number): IServerEntry<ReadonlyArray<IRemoteTerminal>>;
  /** Start a shell on a running server. */
  create(serverId: number, body?: ITerminalCreate): Promise<IRemoteTerminal>;
  /** End a terminal's shell. */
  shutdown(serverId: number, name: string): Promise<void>;
}

export const IServerTerminalsModel = new Token<IServerTerminalsModel>(
  'jupyter-compute-servers:IServerTerminalsModel',
  'The terminals on each compute server, with start and end.'
);

/**
 * The GPU, CPU and memory use of the running compute servers, sampled every few seconds while
 * something shows it (`watched`) and the page is visible.
 */
export interface IServerMetricsModel extends IServerDetailsModel {
  /** Emitted with a server's id whenever its sample (or its error) changes. */
  readonly changed: ISignal<IServerMetricsModel, number>;
  /** A server's last sample (null before the first answer). */
  entry(serverId: number): IServerEntry<IServerMetrics | null>;
}

export const IServerMetricsModel = new Token<IServerMetricsModel>(
  'jupyter-compute-servers:IServerMetricsModel',
  'GPU, CPU and memory use of the running compute servers.'
);

/** The on-prem hosts of the ssh cloud: register, confirm their keys, inventory, edit, forget. */
export interface IHostsModel {
  readonly hosts: ReadonlyArray<IHost>;
  /** Whether the first list has arrived. */
  readonly loaded: boolean;
  /** The error of the last failed refresh, or null. */
  readonly error: string | null;
  /** Emitted whenever the hosts or the error change. */
  readonly changed: ISignal<IHostsModel, void>;
  /** Whether anything shows the hosts now (the sidebar is visible); shown again: re-read. */
  watched: boolean;

  host(id: number): IHost | undefined;
  refresh(): Promise<void>;
  create(body: IHostFields): Promise<IHost>;
  update(id: number, body: IHostUpdate): Promise<IHost>;
  /** Confirm the host key whose fingerprint was shown; the inventory is taken then. */
  trust(id: number, fingerprint: string): Promise<IHost>;
  /** Log in and take the inventory again. */
  inventory(id: number): Promise<IHost>;
  remove(id: number): Promise<void>;
}

export const IHostsModel = new Token<IHostsModel>(
  'jupyter-compute-servers:IHostsModel',
  'The on-prem hosts of the ssh cloud.'
);

/** A compute server's file syncs, as the sync model last read or heard them. */
export interface IServerSyncs {
  /** Its latest syncs, newest first (the running one, if any, among them). */
  readonly runs: ReadonlyArray<ISyncRun>;
  /** The id of the sync running now, or null. */
  readonly running: number | null;
  /** The gitignore lines every sync excludes before the server's own. */
  readonly defaultExcludes: ReadonlyArray<string>;
}

/**
 * File sync between the Jupyter root and the compute servers: each running server's latest
 * syncs (read while the sidebar shows them, followed live by `sync` events), with start and
 * cancel.
 */
export interface ISyncModel extends IServerDetailsModel {
  /** Emitted with a server's id whenever its syncs (or its last start's error) change. */
  readonly changed: ISignal<ISyncModel, number>;
  /** Emitted with a sync when it ends, once its summary has been read. */
  readonly ended: ISignal<ISyncModel, ISyncRun>;
  entry(serverId: number): IServerEntry<IServerSyncs>;
  /** The server's latest sync (running or not), or null. */
  latest(serverId: number): ISyncRun | null;
  /** Why the last start or cancel of a sync of the server failed, or null. */
  actionError(serverId: number): string | null;
  /** Start a sync (202: it runs in the background); a refusal is kept and thrown. */
  start(serverId: number, request?: ISyncRequest): Promise<ISyncRun>;
  /** Ask a running sync to stop. */
  cancel(serverId: number, syncId: number): Promise<ISyncRun>;
  /** Read one sync again. Never rejects. */
  refreshRun(serverId: number, syncId: number): Promise<void>;
  /** Take in what a `sync` event says. */
  applyEvent(serverId: number, data: ISyncEventData): void;
}

export const ISyncModel = new Token<ISyncModel>(
  'jupyter-compute-servers:ISyncModel',
  'File sync between the Jupyter root and the compute servers.'
);

/**
 * The spend of all compute servers and the monthly budget (`GET costs`), read while the
 * sidebar shows them and again on the servers' events.
 */
export interface ICostsModel {
  /** The last answer, or null before the first. */
  readonly costs: ICosts | null;
  /** The error of the last failed read, or null. */
  readonly error: string | null;
  readonly changed: ISignal<ICostsModel, void>;
  /** Whether anything shows the costs now; shown again: read again. */
  watched: boolean;
  readonly watchedChanged: ISignal<ICostsModel, boolean>;
  refresh(): Promise<void>;
}

export const ICostsModel = new Token<ICostsModel>(
  'jupyter-compute-servers:ICostsModel',
  'The spend of all compute servers and the monthly budget.'
);

/**
 * A part of the Compute Servers panel, which a plugin adds (`IComputeServersSidebar`): what it
 * shows above the servers, in a server's row, under a running server and below the servers.
 * In each place, sections show by rank, lowest first. The extension's own: in a row and under
 * it, sync 10, mount 15, metrics 20, kernels 30, terminals 40 and Edit 100; above the servers, the costs
 * (10); below them, the hosts (10).
 */
export interface ISidebarSection {
  readonly rank: number;
  /** Emitted when what it shows changed: the panel renders again. */
  readonly changed?: ISignal<any, any>;
  /** Told whether the panel shows: what it reads, it reads only meanwhile. */
  setWatched?(watched: boolean): void;
  /** Above the list of servers. */
  renderHeader?(servers: IComputeServersModel): ReactNode;
  /** Buttons in a server's row; `pending`: an action of the row is under way. */
  renderActions?(server: IServer, pending: boolean): ReactNode;
  /** Under a running server's row. */
  renderDetails?(server: IServer): ReactNode;
  /** Below the list of servers. */
  renderFooter?(servers: IComputeServersModel): ReactNode;
}

/** The Compute Servers panel in the left sidebar, to which plugins add their sections. */
export interface IComputeServersSidebar {
  /** Show a section until the returned disposable is disposed. */
  addSection(section: ISidebarSection): IDisposable;
}

export const IComputeServersSidebar = new Token<IComputeServersSidebar>(
  'jupyter-compute-servers:IComputeServersSidebar',
  'The Compute Servers panel, to which plugins add sections.'
);
