/* Things, thing types, thing groups and thing principals (shared/spec/provisioning.md §6.4,
 * §6.5, §4.8; members and shapes from the AWS IoT service model). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/api.h"

#define DEPRECATED_TYPE_MESSAGE "Can not create or update a thing with deprecated thing type %s"

/* ---- shared pieces -------------------------------------------------------------------------- */

/* attributePayload: {"attributes": {...}, "merge": bool}. */
static bool read_attribute_payload(struct http_reply *rep, const cJSON *payload,
                                   const cJSON **attributes, bool *merge)
{
    *attributes = NULL;
    *merge = false;
    if (payload == NULL)
        return true;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(payload, "attributes");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(payload, "merge");
    if (m != NULL && !cJSON_IsBool(m) && !cJSON_IsNull(m)) {
        reply_invalid(rep, "attributePayload.merge must be a boolean");
        return false;
    }
    *merge = cJSON_IsTrue(m);
    *attributes = cJSON_IsNull(a) ? NULL : a;
    return check_attributes(rep, *attributes);
}

/* A new object: BASE (when MERGE) updated with CHANGES, where an empty value removes the
 * attribute (UpdateThing's documented way to delete one). */
static cJSON *merged_attributes(const cJSON *base, const cJSON *changes, bool merge)
{
    cJSON *out = merge && base ? cJSON_Duplicate(base, 1) : cJSON_CreateObject();
    const cJSON *c;
    cJSON_ArrayForEach(c, changes)
    {
        cJSON_DeleteItemFromObjectCaseSensitive(out, c->string);
        if (c->valuestring[0] != '\0')
            cJSON_AddStringToObject(out, c->string, c->valuestring);
    }
    return out;
}

/* The thing type named by a create or update must exist and not be deprecated. */
static bool type_usable(struct http_request *req, struct http_reply *rep, const char *type)
{
    struct registry_thing_type t = {0};
    struct iot_error err = {0};
    if (type == NULL)
        return true;
    if (!check_thing_name(rep, "thingTypeName", type))
        return false;
    if (registry_thing_type_get(req->srv->cfg.reg, type, &t, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return false;
    }
    bool deprecated = t.deprecated;
    registry_thing_type_clear(&t);
    if (deprecated)
        reply_invalid(rep, DEPRECATED_TYPE_MESSAGE, type);
    return !deprecated;
}

static bool same_text(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

/* Attribute maps compare equal when both are empty, however they are spelled. */
static bool same_attributes(const cJSON *a, const cJSON *b)
{
    bool a_empty = a == NULL || cJSON_GetArraySize(a) == 0;
    bool b_empty = b == NULL || cJSON_GetArraySize(b) == 0;
    if (a_empty || b_empty)
        return a_empty && b_empty;
    return cJSON_Compare(a, b, true);
}

/* Reads "expectedVersion" from the query string (DeleteThing, DeleteThingGroup). */
static bool query_version(struct http_request *req, struct http_reply *rep, long long *out)
{
    *out = -1;
    return req_query_int(req, rep, "expectedVersion", 0, 9007199254740991LL, out);
}

static void version_conflict(struct http_reply *rep, const char *what, const char *name)
{
    reply_error(rep, 409, "VersionConflictException",
                "The version for %s %s does not match the expected version.", what, name);
}

static cJSON *group_name_and_arn(struct http_request *req, const char *name)
{
    cJSON *g = cJSON_CreateObject();
    cJSON_AddStringToObject(g, "groupName", name);
    add_arn(req, g, "groupArn", "thinggroup", name);
    return g;
}

/* ---- things --------------------------------------------------------------------------------- */

struct thing_input {
    const char *type;
    const cJSON *attributes;
    bool merge;
    long long expected_version;
    bool remove_type;
};

static bool read_thing_input(struct http_request *req, struct http_reply *rep,
                             struct thing_input *in)
{
    const cJSON *payload = NULL;
    const char *billing = NULL;
    *in = (struct thing_input){.expected_version = -1};
    if (!body_string(req, rep, "thingTypeName", false, &in->type) ||
        !body_node(req, rep, "attributePayload", false, &payload) ||
        !read_attribute_payload(rep, payload, &in->attributes, &in->merge) ||
        !body_int(req, rep, "expectedVersion", &in->expected_version) ||
        !body_bool(req, rep, "removeThingType", &in->remove_type) ||
        !body_string(req, rep, "billingGroupName", false, &billing))
        return false;
    if (billing != NULL) { /* iotmock has no billing groups, so none exists */
        reply_not_found(rep, "Billing group %s not found", billing);
        return false;
    }
    return true;
}

static void thing_created(struct http_request *req, struct http_reply *rep,
                          const struct registry_thing *t)
{
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "thingName", t->name);
    add_arn(req, out, "thingArn", "thing", t->name);
    cJSON_AddStringToObject(out, "thingId", t->id);
    reply_json(rep, out);
}

/* §6.5: CreateThing is idempotent for an identical request; another configuration under the
 * same name is ResourceAlreadyExistsException. */
static void create_thing(struct http_request *req, struct http_reply *rep, const char *name,
                         const struct thing_input *in)
{
    struct registry *reg = req->srv->cfg.reg;
    struct registry_thing existing = {0}, t = {0};
    struct iot_error err = {0};
    if (registry_thing_get(reg, name, &existing, NULL) == IOT_OK) {
        if (same_text(existing.type_name, in->type) &&
            same_attributes(existing.attributes, in->attributes))
            thing_created(req, rep, &existing);
        else
            reply_exists(rep, existing.id, arn_of(req, "thing", name),
                         "Thing %s already exists with different tags or attributes", name);
        registry_thing_clear(&existing);
        return;
    }
    if (!type_usable(req, rep, in->type))
        return;
    cJSON *attributes = merged_attributes(NULL, in->attributes, false);
    t.name = (char *)name;
    t.type_name = (char *)in->type;
    t.attributes = attributes;
    if (registry_thing_put(reg, &t, &err) != IOT_OK ||
        registry_thing_get(reg, name, &existing, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else
        thing_created(req, rep, &existing);
    cJSON_Delete(attributes);
    registry_thing_clear(&existing);
}

void op_create_thing(struct http_request *req, struct http_reply *rep)
{
    struct thing_input in;
    const char *name = req->params[0];
    if (!check_thing_name(rep, "thingName", name) || !read_thing_input(req, rep, &in))
        return;
    if (!txn_begin(req, rep))
        return;
    create_thing(req, rep, name, &in);
    txn_end(req, rep);
}

static cJSON *thing_json(struct http_request *req, const char *name, const char *id,
                         const char *type, const cJSON *attributes, long long version,
                         bool describe)
{
    cJSON *out = cJSON_CreateObject();
    if (describe)
        cJSON_AddStringToObject(out, "defaultClientId", name);
    cJSON_AddStringToObject(out, "thingName", name);
    if (describe)
        cJSON_AddStringToObject(out, "thingId", id);
    add_arn(req, out, "thingArn", "thing", name);
    if (type != NULL)
        cJSON_AddStringToObject(out, "thingTypeName", type);
    cJSON_AddItemToObject(out, "attributes",
                          attributes ? cJSON_Duplicate(attributes, 1) : cJSON_CreateObject());
    cJSON_AddNumberToObject(out, "version", (double)version);
    return out;
}

void op_describe_thing(struct http_request *req, struct http_reply *rep)
{
    struct registry_thing t = {0};
    struct iot_error err = {0};
    const char *name = req->params[0];
    if (!check_thing_name(rep, "thingName", name))
        return;
    if (registry_thing_get(req->srv->cfg.reg, name, &t, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    reply_json(rep, thing_json(req, t.name, t.id, t.type_name, t.attributes, t.version, true));
    registry_thing_clear(&t);
}

static void update_thing(struct http_request *req, struct http_reply *rep, const char *name,
                         const struct thing_input *in)
{
    struct registry *reg = req->srv->cfg.reg;
    struct registry_thing t = {0};
    struct iot_error err = {0};
    if (registry_thing_get(reg, name, &t, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    if (in->expected_version >= 0 && in->expected_version != t.version) {
        version_conflict(rep, "thing", name);
    } else if (type_usable(req, rep, in->type)) {
        if (in->type != NULL) {
            free(t.type_name);
            t.type_name = strdup(in->type);
        } else if (in->remove_type) {
            free(t.type_name);
            t.type_name = NULL;
        }
        if (in->attributes != NULL) {
            cJSON *attributes = merged_attributes(t.attributes, in->attributes, in->merge);
            cJSON_Delete(t.attributes);
            t.attributes = attributes;
        }
        if (registry_thing_put(reg, &t, &err) != IOT_OK)
            reply_iot_error(rep, &err);
        else
            reply_json(rep, NULL);
    }
    registry_thing_clear(&t);
}

void op_update_thing(struct http_request *req, struct http_reply *rep)
{
    struct thing_input in;
    const char *name = req->params[0];
    if (!check_thing_name(rep, "thingName", name) || !read_thing_input(req, rep, &in))
        return;
    if (in.type != NULL && in.remove_type) {
        reply_invalid(rep, "thingTypeName and removeThingType cannot be used together");
        return;
    }
    if (!txn_begin(req, rep))
        return;
    update_thing(req, rep, name, &in);
    txn_end(req, rep);
}

/* §4.8: deleting an unknown thing succeeds; a thing with principals is refused. */
static void delete_thing(struct http_request *req, struct http_reply *rep, const char *name,
                         long long expected)
{
    struct registry *reg = req->srv->cfg.reg;
    struct registry_thing t = {0};
    struct iot_error err = {0};
    cJSON *principals = NULL;
    enum iot_err rc = registry_thing_get(reg, name, &t, &err);
    if (rc == IOT_ERR_NOT_FOUND) {
        reply_json(rep, NULL);
        return;
    }
    if (rc == IOT_OK)
        rc = registry_thing_principals(reg, name, &principals);
    if (rc != IOT_OK)
        reply_iot_error(rep, &err);
    else if (expected >= 0 && expected != t.version)
        version_conflict(rep, "thing", name);
    else if (cJSON_GetArraySize(principals) > 0)
        reply_invalid(rep, "Cannot delete. Thing %s is still attached to one or more principals",
                      name);
    else if (registry_thing_delete(reg, name, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
    cJSON_Delete(principals);
    registry_thing_clear(&t);
}

void op_delete_thing(struct http_request *req, struct http_reply *rep)
{
    long long expected;
    const char *name = req->params[0];
    if (!check_thing_name(rep, "thingName", name) || !query_version(req, rep, &expected))
        return;
    if (!txn_begin(req, rep))
        return;
    delete_thing(req, rep, name, expected);
    txn_end(req, rep);
}

void op_list_things(struct http_request *req, struct http_reply *rep)
{
    struct registry_thing_filter f = {0};
    struct registry_page pg;
    struct iot_error err = {0};
    cJSON *items = NULL, *item;
    char *next = NULL;
    f.attribute_name = req_query(req, "attributeName");
    f.attribute_value = req_query(req, "attributeValue");
    f.type_name = req_query(req, "thingTypeName");
    if (!req_query_bool(req, rep, "usePrefixAttributeValue", &f.attribute_prefix) ||
        !page_read(req, rep, "maxResults", "nextToken", &pg))
        return;
    if (registry_thing_list(req->srv->cfg.reg, &f, &pg, &items, &next, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON *things = cJSON_AddArrayToObject(out, "things");
    cJSON_ArrayForEach(item, items)
    {
        cJSON_AddItemToArray(things, thing_json(req, item_str(item, "name"), NULL,
                                                item_str(item, "type_name"),
                                                cJSON_GetObjectItem(item, "attributes"),
                                                item_num(item, "version"), false));
    }
    cJSON_Delete(items);
    page_next(out, "nextToken", next);
    reply_json(rep, out);
}

/* ---- thing types ---------------------------------------------------------------------------- */

static cJSON *type_properties(const char *description, const cJSON *searchable)
{
    cJSON *p = cJSON_CreateObject();
    if (description != NULL)
        cJSON_AddStringToObject(p, "thingTypeDescription", description);
    if (searchable != NULL && cJSON_GetArraySize(searchable) > 0)
        cJSON_AddItemToObject(p, "searchableAttributes", cJSON_Duplicate(searchable, 1));
    return p;
}

static cJSON *type_metadata(bool deprecated, long long deprecated_at, long long created)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddBoolToObject(m, "deprecated", deprecated);
    if (deprecated)
        add_time(m, "deprecationDate", deprecated_at);
    add_time(m, "creationDate", created);
    return m;
}

static bool read_type_properties(struct http_request *req, struct http_reply *rep,
                                 struct registry_thing_type *t)
{
    const cJSON *props = NULL, *item;
    if (!body_node(req, rep, "thingTypeProperties", false, &props))
        return false;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(props, "thingTypeDescription");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(props, "searchableAttributes");
    if ((d != NULL && !cJSON_IsString(d)) || (s != NULL && !cJSON_IsArray(s))) {
        reply_invalid(rep, "thingTypeProperties: thingTypeDescription must be a string and "
                           "searchableAttributes an array of strings");
        return false;
    }
    cJSON_ArrayForEach(item, s)
    {
        if (!cJSON_IsString(item)) {
            reply_invalid(rep, "searchableAttributes must be an array of strings");
            return false;
        }
    }
    t->description = d ? d->valuestring : NULL;
    t->searchable = (cJSON *)s;
    return true;
}

static void type_created(struct http_request *req, struct http_reply *rep, const char *name,
                         const char *id)
{
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "thingTypeName", name);
    add_arn(req, out, "thingTypeArn", "thingtype", name);
    cJSON_AddStringToObject(out, "thingTypeId", id);
    reply_json(rep, out);
}

static void create_type(struct http_request *req, struct http_reply *rep,
                        const struct registry_thing_type *in)
{
    struct registry *reg = req->srv->cfg.reg;
    struct registry_thing_type t = {0};
    struct iot_error err = {0};
    if (registry_thing_type_get(reg, in->name, &t, NULL) == IOT_OK) {
        cJSON *empty = cJSON_CreateArray();
        if (same_text(t.description, in->description) &&
            cJSON_Compare(t.searchable ? t.searchable : empty,
                          in->searchable ? in->searchable : empty, true))
            type_created(req, rep, t.name, t.id);
        else
            reply_exists(rep, t.id, arn_of(req, "thingtype", in->name),
                         "Thing type %s already exists with different properties", in->name);
        cJSON_Delete(empty);
    } else if (registry_thing_type_create(reg, in, &err) != IOT_OK ||
               registry_thing_type_get(reg, in->name, &t, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
    } else {
        type_created(req, rep, t.name, t.id);
    }
    registry_thing_type_clear(&t);
}

void op_create_thing_type(struct http_request *req, struct http_reply *rep)
{
    struct registry_thing_type in = {.name = req->params[0]};
    if (!check_thing_name(rep, "thingTypeName", in.name) || !read_type_properties(req, rep, &in))
        return;
    if (!txn_begin(req, rep))
        return;
    create_type(req, rep, &in);
    txn_end(req, rep);
}

void op_describe_thing_type(struct http_request *req, struct http_reply *rep)
{
    struct registry_thing_type t = {0};
    struct iot_error err = {0};
    if (!check_thing_name(rep, "thingTypeName", req->params[0]))
        return;
    if (registry_thing_type_get(req->srv->cfg.reg, req->params[0], &t, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "thingTypeName", t.name);
    cJSON_AddStringToObject(out, "thingTypeId", t.id);
    add_arn(req, out, "thingTypeArn", "thingtype", t.name);
    cJSON_AddItemToObject(out, "thingTypeProperties", type_properties(t.description, t.searchable));
    cJSON_AddItemToObject(out, "thingTypeMetadata",
                          type_metadata(t.deprecated, t.deprecated_at, t.created));
    registry_thing_type_clear(&t);
    reply_json(rep, out);
}

void op_list_thing_types(struct http_request *req, struct http_reply *rep)
{
    struct registry_page pg;
    struct iot_error err = {0};
    cJSON *items = NULL, *item;
    char *next = NULL;
    const char *name = req_query(req, "thingTypeName");
    if (!page_read(req, rep, "maxResults", "nextToken", &pg))
        return;
    if (registry_thing_type_list(req->srv->cfg.reg, name, &pg, &items, &next, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON *types = cJSON_AddArrayToObject(out, "thingTypes");
    cJSON_ArrayForEach(item, items)
    {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "thingTypeName", item_str(item, "name"));
        add_arn(req, t, "thingTypeArn", "thingtype", item_str(item, "name"));
        cJSON_AddItemToObject(t, "thingTypeProperties",
                              type_properties(item_str(item, "description"),
                                              cJSON_GetObjectItem(item, "searchable")));
        cJSON_AddItemToObject(t, "thingTypeMetadata",
                              type_metadata(item_num(item, "deprecated") != 0,
                                            item_num(item, "deprecated_at"),
                                            item_num(item, "created")));
        cJSON_AddItemToArray(types, t);
    }
    cJSON_Delete(items);
    page_next(out, "nextToken", next);
    reply_json(rep, out);
}

void op_deprecate_thing_type(struct http_request *req, struct http_reply *rep)
{
    bool undo = false;
    struct iot_error err = {0};
    if (!check_thing_name(rep, "thingTypeName", req->params[0]) ||
        !body_bool(req, rep, "undoDeprecate", &undo))
        return;
    if (registry_thing_type_deprecate(req->srv->cfg.reg, req->params[0], !undo, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
}

/* AWS deletes only a type deprecated (for five minutes, which iotmock does not wait for) and
 * associated with no thing. */
static void delete_type(struct http_request *req, struct http_reply *rep, const char *name)
{
    struct registry_thing_type t = {0};
    struct iot_error err = {0};
    if (registry_thing_type_get(req->srv->cfg.reg, name, &t, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else if (!t.deprecated)
        reply_invalid(rep, "Thing type %s must be deprecated before it can be deleted", name);
    else if (registry_thing_type_delete(req->srv->cfg.reg, name, &err) == IOT_ERR_DELETE_CONFLICT)
        reply_invalid(rep, "%s", err.message);
    else if (err.code != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
    registry_thing_type_clear(&t);
}

void op_delete_thing_type(struct http_request *req, struct http_reply *rep)
{
    if (!check_thing_name(rep, "thingTypeName", req->params[0]) || !txn_begin(req, rep))
        return;
    delete_type(req, rep, req->params[0]);
    txn_end(req, rep);
}

/* ---- thing groups --------------------------------------------------------------------------- */

static bool read_group(struct http_request *req, struct http_reply *rep,
                       struct registry_thing_group *g)
{
    const cJSON *props = NULL, *payload = NULL, *attributes = NULL;
    const char *parent = NULL;
    bool merge;
    if (!body_string(req, rep, "parentGroupName", false, &parent) ||
        !body_node(req, rep, "thingGroupProperties", false, &props))
        return false;
    if (parent != NULL && !check_thing_name(rep, "parentGroupName", parent))
        return false;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(props, "thingGroupDescription");
    payload = cJSON_GetObjectItemCaseSensitive(props, "attributePayload");
    if ((d != NULL && !cJSON_IsString(d)) || (payload != NULL && !cJSON_IsObject(payload))) {
        reply_invalid(rep, "thingGroupProperties: thingGroupDescription must be a string and "
                           "attributePayload an object");
        return false;
    }
    if (!read_attribute_payload(rep, payload, &attributes, &merge))
        return false;
    g->parent = (char *)parent;
    g->description = d ? d->valuestring : NULL;
    g->attributes = (cJSON *)attributes;
    return true;
}

static void group_created(struct http_request *req, struct http_reply *rep, const char *name,
                          const char *id)
{
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "thingGroupName", name);
    add_arn(req, out, "thingGroupArn", "thinggroup", name);
    cJSON_AddStringToObject(out, "thingGroupId", id);
    reply_json(rep, out);
}

static void create_group(struct http_request *req, struct http_reply *rep,
                         const struct registry_thing_group *in)
{
    struct registry *reg = req->srv->cfg.reg;
    struct registry_thing_group g = {0};
    struct iot_error err = {0};
    if (registry_thing_group_get(reg, in->name, &g, NULL) == IOT_OK) {
        if (same_text(g.parent, in->parent) && same_text(g.description, in->description) &&
            same_attributes(g.attributes, in->attributes))
            group_created(req, rep, g.name, g.id);
        else
            reply_exists(rep, g.id, arn_of(req, "thinggroup", in->name),
                         "Thing group %s already exists with different properties", in->name);
    } else if (registry_thing_group_create(reg, in, &err) != IOT_OK ||
               registry_thing_group_get(reg, in->name, &g, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
    } else {
        group_created(req, rep, g.name, g.id);
    }
    registry_thing_group_clear(&g);
}

void op_create_thing_group(struct http_request *req, struct http_reply *rep)
{
    struct registry_thing_group in = {.name = req->params[0]};
    if (!check_thing_name(rep, "thingGroupName", in.name) || !read_group(req, rep, &in))
        return;
    if (!txn_begin(req, rep))
        return;
    create_group(req, rep, &in);
    txn_end(req, rep);
}

static cJSON *group_metadata(struct http_request *req, const struct registry_thing_group *g)
{
    cJSON *m = cJSON_CreateObject(), *ancestors = NULL, *a;
    if (g->parent != NULL)
        cJSON_AddStringToObject(m, "parentGroupName", g->parent);
    cJSON *chain = cJSON_AddArrayToObject(m, "rootToParentThingGroups");
    if (registry_thing_group_ancestors(req->srv->cfg.reg, g->name, &ancestors) == IOT_OK) {
        cJSON_ArrayForEach(a, ancestors)
        {
            cJSON_AddItemToArray(chain, group_name_and_arn(req, a->valuestring));
        }
    }
    cJSON_Delete(ancestors);
    add_time(m, "creationDate", g->created);
    return m;
}

void op_describe_thing_group(struct http_request *req, struct http_reply *rep)
{
    struct registry_thing_group g = {0};
    struct iot_error err = {0};
    if (!check_thing_name(rep, "thingGroupName", req->params[0]))
        return;
    if (registry_thing_group_get(req->srv->cfg.reg, req->params[0], &g, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "thingGroupName", g.name);
    cJSON_AddStringToObject(out, "thingGroupId", g.id);
    add_arn(req, out, "thingGroupArn", "thinggroup", g.name);
    cJSON_AddNumberToObject(out, "version", (double)g.version);
    cJSON *props = cJSON_AddObjectToObject(out, "thingGroupProperties");
    if (g.description != NULL)
        cJSON_AddStringToObject(props, "thingGroupDescription", g.description);
    cJSON *payload = cJSON_AddObjectToObject(props, "attributePayload");
    cJSON_AddItemToObject(payload, "attributes",
                          g.attributes ? cJSON_Duplicate(g.attributes, 1) : cJSON_CreateObject());
    cJSON_AddItemToObject(out, "thingGroupMetadata", group_metadata(req, &g));
    registry_thing_group_clear(&g);
    reply_json(rep, out);
}

static void reply_group_list(struct http_request *req, struct http_reply *rep, cJSON *items,
                             char *next)
{
    cJSON *out = cJSON_CreateObject(), *item;
    cJSON *groups = cJSON_AddArrayToObject(out, "thingGroups");
    cJSON_ArrayForEach(item, items)
    {
        cJSON_AddItemToArray(groups, group_name_and_arn(req, item_str(item, "name")));
    }
    cJSON_Delete(items);
    page_next(out, "nextToken", next);
    reply_json(rep, out);
}

void op_list_thing_groups(struct http_request *req, struct http_reply *rep)
{
    struct registry_page pg;
    struct iot_error err = {0};
    cJSON *items = NULL;
    char *next = NULL;
    bool recursive = false;
    const char *parent = req_query(req, "parentGroup");
    const char *prefix = req_query(req, "namePrefixFilter");
    if (!req_query_bool(req, rep, "recursive", &recursive) ||
        !page_read(req, rep, "maxResults", "nextToken", &pg))
        return;
    if (parent != NULL && !registry_thing_group_exists(req->srv->cfg.reg, parent)) {
        reply_not_found(rep, "Thing group %s not found", parent);
        return;
    }
    if (registry_thing_group_list(req->srv->cfg.reg, parent, prefix, recursive, &pg, &items, &next,
                                  &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    reply_group_list(req, rep, items, next);
}

static void delete_group(struct http_request *req, struct http_reply *rep, const char *name,
                         long long expected)
{
    struct registry_thing_group g = {0};
    struct iot_error err = {0};
    enum iot_err rc = registry_thing_group_get(req->srv->cfg.reg, name, &g, &err);
    if (rc == IOT_ERR_NOT_FOUND) /* as DeleteThing: nothing to delete is not an error */
        reply_json(rep, NULL);
    else if (rc != IOT_OK)
        reply_iot_error(rep, &err);
    else if (expected >= 0 && expected != g.version)
        version_conflict(rep, "thing group", name);
    else if (registry_thing_group_delete(req->srv->cfg.reg, name, &err) == IOT_ERR_DELETE_CONFLICT)
        reply_invalid(rep, "Cannot delete thing group %s: it has child thing groups", name);
    else if (err.code != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
    registry_thing_group_clear(&g);
}

void op_delete_thing_group(struct http_request *req, struct http_reply *rep)
{
    long long expected;
    if (!check_thing_name(rep, "thingGroupName", req->params[0]) ||
        !query_version(req, rep, &expected) || !txn_begin(req, rep))
        return;
    delete_group(req, rep, req->params[0], expected);
    txn_end(req, rep);
}

/* A resource named in the body by name or by ARN ("arn:...:<kind>/<name>"). */
static bool name_or_arn(struct http_request *req, struct http_reply *rep, const char *name_key,
                        const char *arn_key, const char *kind, const char **out)
{
    const char *name = NULL, *arn = NULL;
    if (!body_string(req, rep, name_key, false, &name) ||
        !body_string(req, rep, arn_key, false, &arn))
        return false;
    if (name == NULL && arn != NULL) {
        const char *slash = strchr(arn, '/');
        size_t kind_len = strlen(kind);
        if (strncmp(arn, "arn:", 4) == 0 && slash && (size_t)(slash - arn) > kind_len &&
            strncmp(slash - kind_len, kind, kind_len) == 0 && slash[-kind_len - 1] == ':')
            name = slash + 1;
        else {
            reply_invalid(rep, "%s '%s' is not a %s ARN", arn_key, arn, kind);
            return false;
        }
    }
    if (name == NULL) {
        reply_invalid(rep, "%s or %s is required", name_key, arn_key);
        return false;
    }
    *out = name;
    return check_thing_name(rep, name_key, name);
}

static void change_membership(struct http_request *req, struct http_reply *rep, bool add)
{
    const char *group, *thing;
    struct iot_error err = {0};
    if (!name_or_arn(req, rep, "thingGroupName", "thingGroupArn", "thinggroup", &group) ||
        !name_or_arn(req, rep, "thingName", "thingArn", "thing", &thing))
        return;
    struct registry *reg = req->srv->cfg.reg;
    enum iot_err rc = add ? registry_thing_group_add(reg, group, thing, &err)
                          : registry_thing_group_remove(reg, group, thing, &err);
    if (rc != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
}

void op_add_thing_to_thing_group(struct http_request *req, struct http_reply *rep)
{
    change_membership(req, rep, true);
}

void op_remove_thing_from_thing_group(struct http_request *req, struct http_reply *rep)
{
    change_membership(req, rep, false);
}

void op_list_things_in_thing_group(struct http_request *req, struct http_reply *rep)
{
    struct registry_thing_filter f = {.group = req->params[0]};
    struct registry_page pg;
    struct iot_error err = {0};
    cJSON *items = NULL, *item;
    char *next = NULL;
    if (!check_thing_name(rep, "thingGroupName", f.group) ||
        !req_query_bool(req, rep, "recursive", &f.recursive) ||
        !page_read(req, rep, "maxResults", "nextToken", &pg))
        return;
    if (!registry_thing_group_exists(req->srv->cfg.reg, f.group)) {
        reply_not_found(rep, "Thing group %s not found", f.group);
        return;
    }
    if (registry_thing_list(req->srv->cfg.reg, &f, &pg, &items, &next, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON *things = cJSON_AddArrayToObject(out, "things");
    cJSON_ArrayForEach(item, items)
    {
        cJSON_AddItemToArray(things, cJSON_CreateString(item_str(item, "name")));
    }
    cJSON_Delete(items);
    page_next(out, "nextToken", next);
    reply_json(rep, out);
}

static bool thing_exists(struct http_request *req, struct http_reply *rep, const char *name)
{
    struct registry_thing t = {0};
    struct iot_error err = {0};
    if (!check_thing_name(rep, "thingName", name))
        return false;
    if (registry_thing_get(req->srv->cfg.reg, name, &t, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return false;
    }
    registry_thing_clear(&t);
    return true;
}

void op_list_thing_groups_for_thing(struct http_request *req, struct http_reply *rep)
{
    struct registry_page pg;
    struct iot_error err = {0};
    cJSON *items = NULL;
    char *next = NULL;
    if (!thing_exists(req, rep, req->params[0]) ||
        !page_read(req, rep, "maxResults", "nextToken", &pg))
        return;
    if (registry_thing_group_list_for_thing(req->srv->cfg.reg, req->params[0], &pg, &items, &next,
                                            &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    reply_group_list(req, rep, items, next);
}

/* ---- thing principals ----------------------------------------------------------------------- */

/* The x-amzn-principal header as a certificate id. */
static bool header_principal(struct http_request *req, struct http_reply *rep,
                             char id[CA_ID_LEN + 1])
{
    const char *principal = req_header(req, "x-amzn-principal");
    if (principal == NULL || principal[0] == '\0') {
        reply_invalid(rep, "principal (header x-amzn-principal) is required");
        return false;
    }
    return principal_cert_id(rep, principal, id);
}

static bool cert_exists(struct http_request *req, struct http_reply *rep, const char *id)
{
    enum cert_status s;
    enum iot_err rc = registry_cert_status(req->srv->cfg.reg, id, &s);
    if (rc == IOT_ERR_NOT_FOUND)
        reply_not_found(rep, "The certificate %s does not exist", id);
    else if (rc != IOT_OK)
        reply_error(rep, 500, "InternalFailureException", "The registry is unavailable");
    return rc == IOT_OK;
}

void op_attach_thing_principal(struct http_request *req, struct http_reply *rep)
{
    char id[CA_ID_LEN + 1];
    struct iot_error err = {0};
    const char *type = req_query(req, "thingPrincipalType");
    if (!check_thing_name(rep, "thingName", req->params[0]) || !header_principal(req, rep, id))
        return;
    /* Newer models add an exclusivity flag; iotmock treats every attachment as non-exclusive. */
    if (type != NULL && strcmp(type, "EXCLUSIVE_THING") != 0 &&
        strcmp(type, "NON_EXCLUSIVE_THING") != 0) {
        reply_invalid(rep, "thingPrincipalType %s is not valid", type);
        return;
    }
    if (registry_thing_principal_attach(req->srv->cfg.reg, req->params[0], id, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else
        reply_json(rep, NULL);
}

void op_detach_thing_principal(struct http_request *req, struct http_reply *rep)
{
    char id[CA_ID_LEN + 1];
    struct iot_error err = {0};
    if (!check_thing_name(rep, "thingName", req->params[0]) || !header_principal(req, rep, id) ||
        !txn_begin(req, rep))
        return;
    if (cert_exists(req, rep, id) &&
        registry_thing_principal_detach(req->srv->cfg.reg, req->params[0], id, &err) != IOT_OK)
        reply_iot_error(rep, &err);
    else if (rep->error_type == NULL)
        reply_json(rep, NULL);
    txn_end(req, rep);
}

void op_list_thing_principals(struct http_request *req, struct http_reply *rep)
{
    struct registry_page pg;
    struct iot_error err = {0};
    cJSON *items = NULL, *item;
    char *next = NULL;
    if (!thing_exists(req, rep, req->params[0]) ||
        !page_read(req, rep, "maxResults", "nextToken", &pg))
        return;
    if (registry_thing_principal_list(req->srv->cfg.reg, req->params[0], &pg, &items, &next,
                                      &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON *principals = cJSON_AddArrayToObject(out, "principals");
    cJSON_ArrayForEach(item, items)
    {
        cJSON_AddItemToArray(principals,
                             cJSON_CreateString(arn_of(req, "cert", item_str(item, "principal"))));
    }
    cJSON_Delete(items);
    page_next(out, "nextToken", next);
    reply_json(rep, out);
}

void op_list_principal_things(struct http_request *req, struct http_reply *rep)
{
    char id[CA_ID_LEN + 1];
    struct registry_page pg;
    struct iot_error err = {0};
    cJSON *items = NULL, *item;
    char *next = NULL;
    if (!header_principal(req, rep, id) || !page_read(req, rep, "maxResults", "nextToken", &pg) ||
        !cert_exists(req, rep, id))
        return;
    if (registry_principal_thing_list(req->srv->cfg.reg, id, &pg, &items, &next, &err) != IOT_OK) {
        reply_iot_error(rep, &err);
        return;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON *things = cJSON_AddArrayToObject(out, "things");
    cJSON_ArrayForEach(item, items)
    {
        cJSON_AddItemToArray(things, cJSON_CreateString(item_str(item, "thing")));
    }
    cJSON_Delete(items);
    page_next(out, "nextToken", next);
    reply_json(rep, out);
}
