/**
 * The shapes of remote kernels: what a compute server's kernel spec says about its server, and
 * what `GET compute-servers/api/servers/{id}/kernels` answers.
 */
import { components } from '../api/schema';

/** `metadata.compute_server` of a kernel spec `compute-<server id>-<kernel>`. */
export interface ISpecServer {
  /** The compute server's id. */
  id: number;
  /** The compute server's name (the spec's display name ends with "on <name>"). */
  name: string;
  /** The server's colour, `#rrggbb`. */
  color: string;
  /** The cloud it runs on. */
  cloud: string;
  /** The kernel's name on the server, e.g. `python3`. */
  kernel: string;
  /** The kernel's display name on the server, e.g. "Python 3 (ipykernel)". */
  kernel_display_name: string;
}

/** One kernel running on a compute server (`RemoteKernel` of openapi.json). */
export type IRemoteKernel = components['schemas']['RemoteKernel'];
