from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST


@csrf_exempt
@require_POST
def post_readings(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"error": "not built yet"}, status=501)
