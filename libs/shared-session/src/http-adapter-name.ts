/** The HTTP platforms the module runs on: Nest's adapters, by their `getType()`. */
export const HTTP_ADAPTER_NAMES = ['express', 'fastify'] as const;

export type HttpAdapterName = (typeof HTTP_ADAPTER_NAMES)[number];

export function isHttpAdapterName(value: unknown): value is HttpAdapterName {
  return (HTTP_ADAPTER_NAMES as readonly unknown[]).includes(value);
}
