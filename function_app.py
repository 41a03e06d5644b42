"""The Azure Functions app (Python v2 model). The twin host loads this very object."""

import azure.durable_functions as df

from durable.room import bp as room_entity
from durable.speaker import bp as speaker_entity
from functions.events import bp as events
from functions.http_api import bp as http_api
from functions.translate import bp as translate
from functions.web import bp as web

app = df.DFApp()
for blueprint in (http_api, events, speaker_entity, room_entity, translate, web):
    app.register_functions(blueprint)
