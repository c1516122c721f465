import { SetMetadata } from '@nestjs/common';
import { SKIP_CSRF_CHECK_METADATA } from './shared-session.constants';

/**
 * Exempts a route (or every route of a controller) from the cross-site
 * request check: for endpoints that other sites may call on purpose, such as
 * a webhook or a form meant to be posted from a partner's page. The route
 * must then not rely on the session cookie to authorize a change.
 */
export const SkipCsrfCheck = (): MethodDecorator & ClassDecorator => SetMetadata(SKIP_CSRF_CHECK_METADATA, true);
