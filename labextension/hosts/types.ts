/**
 * The shapes of on-prem hosts (`compute-servers/api/hosts`), the machines of the `ssh` cloud,
 * and of what that cloud offers (`GET clouds`): names for schemas of openapi.json, from the
 * generated types.
 */
import { components, operations } from '../api/schema';

type Schemas = components['schemas'];

/** One GPU of a host's inventory (NVML on the host). */
export type IHostGpu = Schemas['HostGpu'];

/** What the agent found on a host. */
export type IHostInventory = NonNullable<Schemas['HostInventory']>;

/** What a host's registration holds: the body of `POST hosts` (and `PATCH hosts/{id}`). */
export type IHostFields =
  operations['createHost']['requestBody']['content']['application/json'];

/** The body of `PATCH hosts/{id}`: fields to change, or the fingerprint being confirmed. */
export type IHostUpdate =
  operations['updateHost']['requestBody']['content']['application/json'];

/** A registered host. */
export type IHost = Schemas['Host'];

/** A host the ssh cloud offers (trusted and inventoried). */
export type IHostOffering = Schemas['HostOffering'];

/** A GPU type on an ssh-cloud host, as `GET clouds` offers it. */
export type IHostGpuOffering = IHostOffering['gpus'][number];
