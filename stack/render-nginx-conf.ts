// Renders resty/conf/nginx.conf.template for OpenResty (docker-compose) from
// the environment, to standard output.
import { dockerNginxConf } from './nginx-conf';

process.stdout.write(dockerNginxConf(process.env));
