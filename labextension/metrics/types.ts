/**
 * The shape of `GET compute-servers/api/servers/{id}/metrics`: use sampled on the server now
 * (`Metrics` of openapi.json, from the generated types).
 */
import { components } from '../api/schema';

export type IServerMetrics = components['schemas']['Metrics'];

export type IGpuMetrics = IServerMetrics['gpus'][number];
