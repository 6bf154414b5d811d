import { Token } from '@lumino/coreutils';
import { ISignal } from '@lumino/signaling';

import {
  ICloud,
  IHistoryEntry,
  IServer,
  IServerCreate,
  IServerUpdate,
  ServerAction
} from './servers/types';
import { IRemoteKernel } from './kernels/types';

export * from './servers/types';
export * from './kernels/types';

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
}

export const IComputeServersModel = new Token<IComputeServersModel>(
  'jupyter-compute-servers:IComputeServersModel',
  'The compute servers and clouds, with create, edit, delete and lifecycle actions.'
);

/** The kernels of one compute server, as the kernels model last read them. */
export interface IServerKernels {
  /** The running kernels, orphans first, then oldest first. */
  readonly kernels: ReadonlyArray<IRemoteKernel>;
  /** Whether an answer has come (the list is empty before). */
  readonly loaded: boolean;
  /** The error of the last failed read, or null. */
  readonly error: string | null;
}

/**
 * The kernels running on the compute servers (orphans included), read on demand: the sidebar
 * lists them under each running server and shuts them down.
 */
export interface IServerKernelsModel {
  /** Emitted with a server's id whenever its kernels (or their error) change. */
  readonly changed: ISignal<IServerKernelsModel, number>;
  /**
   * Whether anything shows the kernels now (the sidebar is visible). Live updates only read
   * them meanwhile, and catch up when this turns true.
   */
  watched: boolean;
  readonly watchedChanged: ISignal<IServerKernelsModel, boolean>;

  kernels(serverId: number): IServerKernels;
  refresh(serverId: number): Promise<void>;
  shutdown(serverId: number, kernelId: string): Promise<void>;
  forget(serverId: number): void;
}

export const IServerKernelsModel = new Token<IServerKernelsModel>(
  'jupyter-compute-servers:IServerKernelsModel',
  'The kernels running on each compute server, with shut down.'
);
