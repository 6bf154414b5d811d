import { Token } from '@lumino/coreutils';
import { ISignal } from '@lumino/signaling';

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
